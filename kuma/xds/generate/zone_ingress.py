"""A ZoneIngress's own Envoy config, after Kuma v2.7 (``pkg/xds/generator/ingress_generator.go``,
``pkg/xds/generator/zoneproxy/``, goldens ``pkg/xds/generator/testdata/ingress``).

The ingress passes mesh mTLS through untouched (it holds no certificate): one listener
``inbound:<address>:<port>`` with the ``tls_inspector``, and per reachable destination a filter
chain matching transport ``tls`` and the SNI the calling sidecar sends (``tls.sni_from_tags``:
the service, ``mesh`` and the destination's tags), which TCP-proxies to the EDS cluster
``<mesh>:<service>`` of the zone's local endpoints. A destination's tags that split the
endpoints become the chain's ``metadata_match`` and the cluster's subset keys (Kuma's
"relevant tags"). With nothing to serve the listener answers every connection with
``{"proxy":"<id>","zone":"<zone>"}`` (Kuma's direct-response listener).

Destinations per service: the whole service (Kuma's match-all destination, which it adds when
there are no TrafficRoutes, as here), plus each subset a route names (``destinations.py``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.direct_response.v3 import config_pb2 as direct_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from kuma.resources.model import SERVICE_TAG

from ._pb import ADS_CONFIG_SOURCE, LB_METADATA_KEY, TCP_PROXY_FILTER, pack, set_socket_address
from .endpoints import Endpoint
from .names import inbound_listener_name, sanitize_metric
from .tls import TLS_INSPECTOR, sni_from_tags

#: Kuma's ``envoy.transport_socket_match`` namespace: endpoint tags a cluster's transport
#: socket matches could select on (Kuma puts them on every ingress endpoint).
TRANSPORT_SOCKET_MATCH_KEY = "envoy.transport_socket_match"
DIRECT_RESPONSE_FILTER = "envoy.filters.network.direct_response"
CONNECT_TIMEOUT = 5

#: A destination's tags besides ``kuma.io/service``, sorted; () is the whole service.
Subset = tuple[tuple[str, str], ...]


def cluster_name(mesh: str, service: str) -> str:
    """Kuma's ``GetMeshClusterName``: ``<mesh>:<service>`` (services of every mesh meet here)."""
    return f"{mesh}:{service}"


def sni(mesh: str, service: str, subset: Subset = ()) -> str:
    """The SNI a sidecar of ``mesh`` sends towards ``service`` (or a subset of it)."""
    return sni_from_tags({SERVICE_TAG: service, **dict(subset), "mesh": mesh})


def relevant_tags(subset: Subset, endpoints: Sequence[Endpoint]) -> Subset:
    """The subset's tags that select fewer endpoints (by address) than the whole service:
    only those split the load (Kuma: Envoy would merge endpoints of one address otherwise)."""
    everything = {(e.address, e.port) for e in endpoints}
    relevant = []
    for key, value in subset:
        matched = {(e.address, e.port) for e in endpoints if (key, value) in e.tags}
        if len(matched) < len(everything):
            relevant.append((key, value))
    return tuple(relevant)


def ingress_cluster(mesh: str, service: str, subset_keys: Iterable[Subset]) -> cluster_pb2.Cluster:
    """EDS cluster of a service as the ingress reaches it: no TLS of its own (the caller's
    mTLS is passed through), Kuma's 5 s connect timeout, subsets on the relevant tag keys."""
    name = cluster_name(mesh, service)
    cluster = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    cluster.alt_stat_name = sanitize_metric(name)
    cluster.connect_timeout.seconds = CONNECT_TIMEOUT
    cluster.eds_cluster_config.eds_config.CopyFrom(ADS_CONFIG_SOURCE)
    keys = sorted({tuple(sorted(k for k, _ in s)) for s in subset_keys if s})
    if keys:
        subsets = cluster.lb_subset_config
        subsets.fallback_policy = cluster_pb2.Cluster.LbSubsetConfig.ANY_ENDPOINT
        no_fallback = cluster_pb2.Cluster.LbSubsetConfig.LbSubsetSelector.NO_FALLBACK
        for key in keys:
            subsets.subset_selectors.add(keys=key, fallback_policy=no_fallback)
    return cluster


def ingress_load_assignment(
    mesh: str, service: str, endpoints: Sequence[Endpoint]
) -> endpoint_pb2.ClusterLoadAssignment:
    """The local endpoints of a service, grouped by zone like a sidecar's; each carries its
    tags (without ``kuma.io/service``, with ``mesh``) for subset selection, as Kuma's."""
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=cluster_name(mesh, service))
    zone: str | None = None
    group = None
    for endpoint in sorted(endpoints, key=Endpoint.sort_key):
        if group is None or endpoint.zone != zone:
            zone = endpoint.zone
            group = cla.endpoints.add()
            if zone is not None:
                group.locality.zone = zone
        lb = group.lb_endpoints.add()
        set_socket_address(lb.endpoint.address, endpoint.address, endpoint.port)
        # A local endpoint weighs 1; a remote ingress (a zone egress's endpoint) its instances.
        lb.load_balancing_weight.value = endpoint.weight or 1
        tags = sorted([(k, v) for k, v in endpoint.tags if k != SERVICE_TAG] + [("mesh", mesh)])
        for namespace in (LB_METADATA_KEY, TRANSPORT_SOCKET_MATCH_KEY):
            fields = lb.metadata.filter_metadata[namespace].fields
            for k, v in tags:
                fields[k].string_value = v
    return cla


def filter_chain(
    mesh: str, service: str, subset: Subset, relevant: Subset
) -> listener_components_pb2.FilterChain:
    """TLS with the destination's SNI → TCP proxy to the service's cluster (no termination)."""
    chain = listener_components_pb2.FilterChain()
    match = chain.filter_chain_match
    match.server_names.append(sni(mesh, service, subset))
    match.transport_protocol = "tls"
    name = cluster_name(mesh, service)
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=sanitize_metric(name), cluster=name)
    if relevant:
        fields = proxy.metadata_match.filter_metadata[LB_METADATA_KEY].fields
        for k, v in relevant:
            fields[k].string_value = v
    chain.filters.add(name=TCP_PROXY_FILTER).typed_config.CopyFrom(pack(proxy))
    return chain


def ingress_listener(
    address: str, port: int, chains: Iterable[listener_components_pb2.FilterChain]
) -> listener_pb2.Listener:
    listener = _listener(address, port)
    listener.filter_chains.extend(chains)
    return listener


def empty_listener(address: str, port: int, proxy_id: str, zone: str) -> listener_pb2.Listener:
    """Nothing to serve: every connection gets who answered (Kuma's direct response)."""
    listener = _listener(address, port)
    response = direct_pb2.Config()
    response.response.inline_string = json.dumps(
        {"proxy": proxy_id, "zone": zone}, separators=(",", ":")
    )
    chain = listener.filter_chains.add()
    chain.filters.add(name=DIRECT_RESPONSE_FILTER).typed_config.CopyFrom(pack(response))
    return listener


def _listener(address: str, port: int) -> listener_pb2.Listener:
    listener = listener_pb2.Listener(
        name=inbound_listener_name(address, port), traffic_direction=base_pb2.INBOUND
    )
    set_socket_address(listener.address, address, port)
    listener.enable_reuse_port.value = False
    listener.listener_filters.add(
        name=TLS_INSPECTOR, typed_config=pack(tls_inspector_pb2.TlsInspector())
    )
    return listener


def service_chains(
    mesh: str, service: str, subsets: Iterable[Subset], endpoints: Sequence[Endpoint]
) -> tuple[tuple[listener_components_pb2.FilterChain, ...], tuple[Subset, ...]]:
    """The filter chains of one service (each subset once, then the whole service, Kuma's
    order) and the relevant tags of each (the cluster's subset keys)."""
    chains = []
    relevant_sets = []
    seen: set[Subset] = set()
    for subset in (*subsets, ()):
        if subset in seen:
            continue
        seen.add(subset)
        relevant = relevant_tags(subset, endpoints)
        relevant_sets.append(relevant)
        chains.append(filter_chain(mesh, service, subset, relevant))
    return tuple(chains), tuple(relevant_sets)


def generate_zone_ingress(
    proxy_id: str,
    zone: str,
    address: str,
    port: int,
    services: Mapping[str, Mapping[str, Sequence[Subset]]],
    endpoints: Mapping[tuple[str, str], Sequence[Endpoint]],
) -> list[cluster_pb2.Cluster | endpoint_pb2.ClusterLoadAssignment | listener_pb2.Listener]:
    """From scratch (tests compare the engine's incremental assembly with it): ``services``
    maps mesh → service → the subsets routes name; ``endpoints`` (mesh, service) → local
    endpoints. Meshes and services in name order."""
    resources: list[
        cluster_pb2.Cluster | endpoint_pb2.ClusterLoadAssignment | listener_pb2.Listener
    ] = []
    chains: list[listener_components_pb2.FilterChain] = []
    for mesh in sorted(services):
        for service in sorted(services[mesh]):
            found = endpoints.get((mesh, service), ())
            own, relevant = service_chains(mesh, service, services[mesh][service], found)
            chains.extend(own)
            resources.append(ingress_cluster(mesh, service, relevant))
            resources.append(ingress_load_assignment(mesh, service, found))
    if chains:
        resources.append(ingress_listener(address, port, chains))
    else:
        resources.append(empty_listener(address, port, proxy_id, zone))
    return resources

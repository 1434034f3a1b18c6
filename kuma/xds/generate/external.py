"""ExternalServices reached straight from the sidecar, as Kuma does when the mesh's
``routing.zoneEgress`` is off (Kuma v2.7: ``NewExternalServiceEndpoint`` in
pkg/xds/topology/outbound.go, ``ProvidedEndpointCluster`` and ``ClientSideTLS`` in
pkg/xds/envoy/clusters, ``UpstreamTlsContextOutsideMesh`` in pkg/xds/envoy/tls/v3).

A service that one or more ExternalServices of the mesh tag with its ``kuma.io/service`` is
*external*: the consumer's cluster carries the external addresses itself (no EDS, no
ClusterLoadAssignment resource), STRICT_DNS when an address is a host name (IPv4 lookups, both
families for an IPv6 proxy), STATIC for IPs. With ``tls.enabled`` each endpoint gets Kuma's
transport-socket match: an UpstreamTlsContext with the SNI ``serverName`` (else the host, when
it is a DNS name), the CA (validating the SAN ``serverName`` or the host, unless
``skipHostnameVerification``) and the client certificate and key, all inline as in Kuma.

The DataSources are resolved by the caller's view (``secret``: the mesh's Secret of that name);
an ExternalService whose Secret is missing is left out, as Kuma leaves out an endpoint it cannot
load. Resolved values never show in ``repr``.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import msgspec
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as upstream_http_pb2

from kuma.policies import EMPTY, ProxyPolicies
from kuma.policies.plugin import apply_outbound_cluster
from kuma.resources.model import (
    PROTOCOL_TAG,
    SERVICE_TAG,
    ZONE_TAG,
    Dataplane,
    DataSource,
    ExternalService,
)
from kuma.resources.validation.common import is_dns_name, is_ip, parse_ip
from kuma.resources.validation.external_service import split_host_port

from ._pb import HTTP_PROTOCOL_OPTIONS_KEY, LB_METADATA_KEY, pack, set_socket_address, set_tags
from .destination import Destination
from .names import sanitize_metric
from .protocol import GRPC, HTTP, HTTP2, infer_protocol
from .tls import TLS_TRANSPORT_SOCKET

log = logging.getLogger("kuma.xds.generate")

#: Kuma tags a TLS ExternalService's endpoint with its resource name (``ExternalServiceTag``).
EXTERNAL_SERVICE_TAG = "kuma.io/external-service-name"
TRANSPORT_SOCKET_MATCH_KEY = "envoy.transport_socket_match"

#: A DataSource's value: a mesh Secret's name → its bytes (None: no such Secret).
SecretLookup = Callable[[str], bytes | None]


class UnresolvedSource(Exception):
    """A DataSource names a Secret (or file) that cannot be read; the message names it only."""


class ExternalTls(msgspec.Struct, frozen=True):
    """An endpoint's TLS, its DataSources resolved."""

    sni: str
    #: What the peer certificate's SAN must equal ("" : not checked).
    san: str
    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None
    allow_renegotiation: bool = False

    def __repr__(self) -> str:
        return f"ExternalTls(sni={self.sni!r}, san={self.san!r}, <values redacted>)"

    __str__ = __repr__


class ExternalEndpoint(msgspec.Struct, frozen=True):
    """One ExternalService as its consumers' cluster reaches it."""

    host: str
    port: int
    #: Its tags, sorted (``kuma.io/external-service-name`` added when TLS is on).
    tags: tuple[tuple[str, str], ...]
    tls: ExternalTls | None = None

    @property
    def protocol_tag(self) -> str | None:
        return dict(self.tags).get(PROTOCOL_TAG)

    @property
    def zone(self) -> str | None:
        return dict(self.tags).get(ZONE_TAG)


def read_source(source: DataSource | None, secrets: SecretLookup) -> bytes | None:
    """A DataSource's bytes (UnresolvedSource naming the Secret or file that cannot be read;
    also what a builtin gateway's certificates are read with)."""
    if source is None:
        return None
    if source.secret:
        value = secrets(source.secret)
        if value is None:
            raise UnresolvedSource(f"Secret {source.secret!r}")
        return value
    if source.inline:
        return source.inline
    if source.inline_string:
        return source.inline_string.encode()
    if source.file:
        # Kuma reads the (deprecated) file source on the control plane too.
        try:
            return Path(source.file).read_bytes()
        except OSError:
            raise UnresolvedSource(f"file {source.file!r}") from None
    return None


def external_endpoint(service: ExternalService, secrets: SecretLookup) -> ExternalEndpoint:
    """``service`` as an endpoint (UnresolvedSource when a DataSource cannot be read)."""
    networking = service.networking
    assert networking is not None  # validated
    host, port = split_host_port(networking.address) or ("", "0")
    tags = dict(service.tags)
    tls = networking.tls
    resolved = None
    if tls is not None and tls.enabled:
        tags[EXTERNAL_SERVICE_TAG] = service.name
        sni = tls.server_name or (host if is_dns_name(host) else "")
        resolved = ExternalTls(
            sni=sni,
            san="" if tls.skip_hostname_verification else (tls.server_name or host),
            ca=read_source(tls.ca_cert, secrets),
            cert=read_source(tls.client_cert, secrets),
            key=read_source(tls.client_key, secrets),
            allow_renegotiation=bool(tls.allow_renegotiation),
        )
    return ExternalEndpoint(host, int(port), tuple(sorted(tags.items())), resolved)


def resolve_endpoints(
    services: Mapping[str, ExternalService], secrets: Mapping[str, bytes], mesh: str
) -> tuple[ExternalEndpoint, ...]:
    """The endpoints of ``services`` (one service's ExternalServices, by name), sorted; one
    whose DataSource cannot be read is left out (Kuma: "Endpoint won't be included")."""
    found: list[ExternalEndpoint] = []
    for name in sorted(services):
        try:
            found.append(external_endpoint(services[name], secrets.get))
        except UnresolvedSource as missing:
            log.warning(
                "ExternalService left out: its DataSource cannot be read",
                extra={"fields": {"mesh": mesh, "externalService": name, "missing": str(missing)}},
            )
    # By address and tags; ExternalServices alike in both keep their name order (stable).
    return tuple(sorted(found, key=_address_order))


def _address_order(endpoint: ExternalEndpoint) -> tuple[str, int, tuple[tuple[str, str], ...]]:
    return (endpoint.host, endpoint.port, endpoint.tags)


def referenced_secrets(service: ExternalService) -> frozenset[str]:
    """The names of the mesh Secrets ``service``'s DataSources read."""
    tls = service.networking.tls if service.networking is not None else None
    if tls is None or not tls.enabled:
        return frozenset()
    sources = (tls.ca_cert, tls.client_cert, tls.client_key)
    return frozenset(s.secret for s in sources if s is not None and s.secret)


def is_ipv6_proxy(dataplane: Dataplane) -> bool:
    """Kuma's ``Dataplane.IsIPv6``: the proxy's address is an IPv6 (not IPv4-mapped) one."""
    address = parse_ip(dataplane.networking.address) if dataplane.networking else None
    return isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None


def external_protocol(endpoints: Iterable[ExternalEndpoint]) -> str:
    """The service's protocol from its ExternalServices' ``kuma.io/protocol`` tags."""
    return infer_protocol(e.protocol_tag for e in endpoints)


def _metadata_tags(tags: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    # The service is already the cluster's name: Kuma leaves it out of the metadata.
    return [(k, v) for k, v in tags if k != SERVICE_TAG]


def _tls_context(endpoint: ExternalEndpoint, tls: ExternalTls) -> tls_pb2.UpstreamTlsContext:
    context = tls_pb2.UpstreamTlsContext(sni=tls.sni, allow_renegotiation=tls.allow_renegotiation)
    if tls.cert is not None and tls.key is not None:
        certificate = context.common_tls_context.tls_certificates.add()
        certificate.certificate_chain.inline_bytes = tls.cert
        certificate.private_key.inline_bytes = tls.key
    if tls.ca is not None:
        validation = context.common_tls_context.validation_context
        validation.trusted_ca.inline_bytes = tls.ca
        if tls.san:
            for san_type in (
                common_pb2.SubjectAltNameMatcher.DNS,
                common_pb2.SubjectAltNameMatcher.IP_ADDRESS,
            ):
                validation.match_typed_subject_alt_names.add(
                    san_type=san_type
                ).matcher.exact = tls.san
    return context


def http_options(protocol: str) -> upstream_http_pb2.HttpProtocolOptions | None:
    # Kuma's Http()/Http2() configurers: the external server gets the application's protocol.
    options = upstream_http_pb2.HttpProtocolOptions()
    if protocol == HTTP:
        options.explicit_http_config.http_protocol_options.SetInParent()
    elif protocol in (HTTP2, GRPC):
        options.explicit_http_config.http2_protocol_options.SetInParent()
    else:
        return None
    return options


def external_cluster(
    destination: Destination,
    protocol: str,
    endpoints: Sequence[ExternalEndpoint],
    *,
    ipv6: bool = False,
    policies: ProxyPolicies = EMPTY,
) -> cluster_pb2.Cluster:
    """The cluster of ``destination`` of an external service: its ExternalServices (those
    carrying the destination's tags) inline; ``ipv6``: the consumer is an IPv6 proxy."""
    name = destination.cluster_name
    cluster = cluster_pb2.Cluster(name=name)
    alt = sanitize_metric(name)
    if alt != name:
        cluster.alt_stat_name = alt
    wanted = dict(destination.subset)
    chosen = [e for e in endpoints if _carries(e.tags, wanted)]
    if any(not is_ip(e.host) for e in chosen):
        cluster.type = cluster_pb2.Cluster.STRICT_DNS
        cluster.dns_lookup_family = (
            cluster_pb2.Cluster.AUTO if ipv6 else cluster_pb2.Cluster.V4_ONLY
        )
    else:
        cluster.type = cluster_pb2.Cluster.STATIC
    assignment = cluster.load_assignment
    assignment.cluster_name = name
    # Grouped by ``kuma.io/zone`` (the locality, as Kuma sets it), untagged first.
    groups: dict[str | None, endpoint_components_pb2.LocalityLbEndpoints] = {}
    for endpoint in sorted(chosen, key=lambda e: (e.zone or "", *_address_order(e))):
        group = groups.get(endpoint.zone)
        if group is None:
            group = groups[endpoint.zone] = assignment.endpoints.add()
            if endpoint.zone is not None:
                group.locality.zone = endpoint.zone
        lb = group.lb_endpoints.add()
        set_socket_address(lb.endpoint.address, endpoint.host, endpoint.port)
        lb.load_balancing_weight.value = 1
        tags = _metadata_tags(endpoint.tags)
        if tags:
            set_tags(lb.metadata, LB_METADATA_KEY, tags)
            set_tags(lb.metadata, TRANSPORT_SOCKET_MATCH_KEY, tags)
        if endpoint.tls is not None:
            match = cluster.transport_socket_matches.add(name=endpoint.host)
            for key, value in tags:
                match.match.fields[key].string_value = value
            match.transport_socket.CopyFrom(
                base_pb2.TransportSocket(
                    name=TLS_TRANSPORT_SOCKET,
                    typed_config=pack(_tls_context(endpoint, endpoint.tls)),
                )
            )
    return finish_external_cluster(cluster, destination, protocol, policies)


def finish_external_cluster(
    cluster: cluster_pb2.Cluster,
    destination: Destination,
    protocol: str,
    policies: ProxyPolicies = EMPTY,
) -> cluster_pb2.Cluster:
    """The ExternalService's protocol options (Kuma's Http()/Http2()) and the proxy's
    policies, on a cluster towards an external service (direct or through the egress)."""
    options = http_options(protocol)
    if options is not None:
        cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS_KEY].CopyFrom(pack(options))
    if policies:
        apply_outbound_cluster(cluster, policies, destination.service, protocol)
    return cluster


def _carries(tags: Sequence[tuple[str, str]], wanted: Mapping[str, str]) -> bool:
    have = dict(tags)
    return all(have.get(k) == v for k, v in wanted.items())

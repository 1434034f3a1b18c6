"""Kuma's Prometheus endpoint (``pkg/xds/generator/prometheus_endpoint_generator.go``, goldens in
``testdata/prometheus-endpoint``): with prometheus metrics enabled on the proxy's mesh, the
listener ``kuma:metrics:prometheus`` on ``networking.address``:<backend port> serves ``GET
<backend path>`` from the cluster ``kuma:metrics:hijacker``, a unix socket where kuma-dp's
hijacker (``kuma/dp/hijacker.py``) answers with Envoy's stats in Prometheus format. The path is
rewritten to ``/`` plus Kuma's envoy filter query (``?filter=<regex>&usedonly``).

Left out, as in Kuma: without an admin port (the hijacker reads Envoy's admin API), and when
the port would overshadow one of the Dataplane's inbounds (its Envoy or application side) or
outbounds.

With mesh mTLS on and the backend's ``tls.mode`` ``activeMTLSBackend`` (Kuma's default, or
``skipMTLS: false``), the listener has Kuma's two chains: plaintext only for connections from
the proxy's own address (a Prometheus next to it), and otherwise the mesh's mTLS (a client
certificate of the mesh, the proxy's identity and the mesh CA from SDS), so only a Prometheus
inside the mesh scrapes it. With ``providedTLS`` and the certificate files kuma-dp reports
(``--metrics-cert-path``, ``--metrics-key-path``: node metadata ``metricsCertPath``,
``metricsKeyPath``) the endpoint speaks TLS with them; without them it is plaintext, as in
Kuma.
"""

from __future__ import annotations

import ipaddress

import msgspec
from envoy.config.listener.v3 import listener_pb2

from kuma.resources.metrics import (
    ACTIVE_MTLS,
    PROVIDED_TLS,
    PrometheusConfig,
    default_socket_path,
    prometheus_config,
)
from kuma.resources.model import Dataplane, Mesh
from kuma.resources.mtls import enabled_backend

from ._pb import Message
from .admin import static_endpoints_listener
from .clusters import pipe_cluster
from .dataplane import overlaps
from .tls import downstream_transport_socket, static_downstream_transport_socket

PROMETHEUS_LISTENER = "kuma:metrics:prometheus"
HIJACKER_CLUSTER = "kuma:metrics:hijacker"


class SidecarMetrics(msgspec.Struct, frozen=True):
    """What a proxy's kuma-dp reports for metrics in its node metadata (Kuma's
    ``metricsSocketPath``, ``metricsCertPath``, ``metricsKeyPath``)."""

    #: The hijacker's unix socket; "": Kuma's default path.
    socket_path: str = ""
    #: The certificate and key files for ``providedTLS`` (on the proxy's host); "": none.
    cert_path: str = ""
    key_path: str = ""


NO_SIDECAR_METRICS = SidecarMetrics()


def uses_port(dataplane: Dataplane, address: str, port: int) -> bool:
    """Kuma's ``UsesInterface``: an inbound (Envoy or application side) or an outbound already
    listens on ``port`` at an address overlapping ``address``."""
    networking = dataplane.networking
    if networking is None:
        return False
    for inbound in networking.inbound:
        own = inbound.effective_address(networking)
        if port == inbound.port and overlaps(address, own):
            return True
        workload = inbound.effective_service_address(networking)
        if port == inbound.effective_service_port and overlaps(address, workload):
            return True
    return any(
        port == outbound.port and overlaps(address, outbound.effective_address)
        for outbound in networking.outbound
    )


def _secured_by_mesh_mtls(config: PrometheusConfig, mesh: Mesh | None) -> bool:
    """Kuma's ``secureMetricsWithMeshMtls``."""
    if enabled_backend(mesh) is None:
        return False
    if config.tls is not None:
        return config.tls.mode == ACTIVE_MTLS
    return not config.skip_mtls


def prometheus_resources(
    dataplane: Dataplane,
    mesh: Mesh | None,
    admin_port: int,
    sidecar: SidecarMetrics = NO_SIDECAR_METRICS,
) -> list[Message]:
    """The hijacker cluster and the Prometheus listener of one proxy, or nothing (see the
    module doc). ``sidecar``: what its kuma-dp reported (socket, certificate files)."""
    config = prometheus_config(mesh, dataplane)
    networking = dataplane.networking
    if config is None or admin_port == 0 or networking is None:
        return []
    address = networking.address
    if uses_port(dataplane, address, config.port):
        return []
    path = sidecar.socket_path or default_socket_path(dataplane.name, dataplane.mesh)
    routes = [(config.path, HIJACKER_CLUSTER, "/" + config.envoy_query)]
    listener = static_endpoints_listener(PROMETHEUS_LISTENER, address, config.port, routes)
    if mesh is not None and _secured_by_mesh_mtls(config, mesh):
        try:
            own = ipaddress.ip_address(address)
        except ValueError:
            return []  # no address to let plaintext from: nothing rather than all plaintext
        plain = listener.filter_chains[0]
        secured = listener.filter_chains.add()
        secured.CopyFrom(plain)
        secured.transport_socket.CopyFrom(downstream_transport_socket(mesh.name))
        source = plain.filter_chain_match.source_prefix_ranges.add(address_prefix=address)
        source.prefix_len.value = own.max_prefixlen
    elif config.tls_mode == PROVIDED_TLS and sidecar.cert_path and sidecar.key_path:
        _provided_tls(listener, sidecar)
    return [pipe_cluster(HIJACKER_CLUSTER, path), listener]


def _provided_tls(listener: listener_pb2.Listener, sidecar: SidecarMetrics) -> None:
    """Kuma's ``providedTLS`` chains, as it builds them: a first chain for transport protocol
    ``tls`` without a TLS context, which never matches (the listener has no TLS inspector, so
    every connection is ``raw_buffer``), then the chain terminating TLS with kuma-dp's
    certificate files. In effect every scrape must speak TLS."""
    plain = listener.filter_chains[0]
    secured = listener.filter_chains.add()
    secured.CopyFrom(plain)
    socket = static_downstream_transport_socket(sidecar.cert_path, sidecar.key_path)
    secured.transport_socket.CopyFrom(socket)
    plain.filter_chain_match.transport_protocol = "tls"

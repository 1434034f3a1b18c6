"""A sidecar's way to ExternalServices through the zone's egress, as Kuma v2.7 does when the
mesh's ``routing.zoneEgress`` is on (``fillExternalServicesOutboundsThroughEgress`` in
pkg/xds/topology/outbound.go; the ``HasExternalService`` branch of
pkg/xds/generator/outbound_proxy_generator.go).

The external service's cluster is then an ordinary EDS cluster: its endpoints are the zone's
ZoneEgresses (``networking.address:port``), one per (ExternalService, egress), tagged with the
ExternalService's tags (so subsets select as usual), weight 1. It originates the mesh's mTLS
with SNI ``<service>{mesh=<mesh>}`` (Kuma's ``SNIFromTags`` of the destination's tags plus
``mesh``: the egress picks its filter chain by it) and accepts only the egress's identity,
``spiffe://<mesh>/zone-egress``. The ExternalService's own TLS is the egress's business
(``zone_egress.py``). Kuma requires mTLS for ``zoneEgress`` (the Mesh validation refuses it
otherwise); a mesh without an enabled backend keeps the direct way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from envoy.config.cluster.v3 import cluster_pb2

from kuma.multizone.available_services import egress_routing
from kuma.policies import EMPTY, ProxyPolicies
from kuma.resources.model import Mesh
from kuma.resources.mtls import enabled_backend

from ._pb import HTTP_PROTOCOL_OPTIONS_KEY
from .clusters import service_cluster
from .destination import Destination
from .endpoints import Endpoint
from .external import EXTERNAL_SERVICE_TAG, ExternalEndpoint, finish_external_cluster

#: The service name a zone egress's identity carries (Kuma's ``ZoneEgressServiceName``).
ZONE_EGRESS_SERVICE = "zone-egress"


class EgressAddress(NamedTuple):
    """Where a ZoneEgress of this zone listens (its ``networking.address`` and ``port``)."""

    address: str
    port: int


def routes_through_egress(mesh: Mesh | None) -> bool:
    """Whether the mesh's sidecars reach ExternalServices through the zone egress."""
    return egress_routing(mesh) and enabled_backend(mesh) is not None


def egress_endpoints(
    external: Sequence[ExternalEndpoint], egresses: Sequence[EgressAddress]
) -> tuple[Endpoint, ...]:
    """One endpoint per (ExternalService, egress): the egress's address with the
    ExternalService's tags (its zone the locality); none when the zone has no egress (Kuma:
    the external service is then unreachable)."""
    found: list[Endpoint] = []
    for service in external:
        tags = tuple((k, v) for k, v in service.tags if k != EXTERNAL_SERVICE_TAG)
        for egress in egresses:
            found.append(Endpoint(egress.address, egress.port, tags, service.zone))
    return tuple(found)


def egress_cluster(
    destination: Destination, protocol: str, mesh: str, policies: ProxyPolicies = EMPTY
) -> cluster_pb2.Cluster:
    """The consumer's EDS cluster of an external service reached through the egress."""
    cluster = service_cluster(destination, protocol, mesh, upstream=ZONE_EGRESS_SERVICE)
    # Kuma's Http()/Http2() by the ExternalService's protocol, not the mesh's HTTP/2.
    del cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS_KEY]
    return finish_external_cluster(cluster, destination, protocol, policies)

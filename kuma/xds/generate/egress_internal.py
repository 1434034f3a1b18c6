"""A ZoneEgress's way to other zones' services, after Kuma v2.7
(pkg/xds/generator/egress/internal_services_generator.go over ``zoneproxy``; goldens
``02.internalservice-only``, ``03.mixed-services``,
``06.mixed-services-with-external-in-other-zone``).

In a mesh with ``routing.zoneEgress`` a sidecar reaches a service another zone has through its
own zone's egress (``cross_zone.through_egresses``), originating the mesh's mTLS to the service
itself. The egress does what a ZoneIngress does, in the other direction: it holds no
certificate for this and passes the TLS through, picked by SNI.

* Per (mesh, service) other zones' ingresses list, one filter chain per destination (the whole
  service and each subset the mesh's routes name), matched by transport ``tls`` and the SNI the
  sidecar sends (``zone_ingress.sni``), TCP-proxying to the EDS cluster ``<mesh>:<service>``
  (``zone_ingress.filter_chain``: a subset's relevant tags become its ``metadata_match``).
* That cluster's endpoints are the remote ingresses' public addresses, **weight = the entry's
  instances** (Kuma's ``BuildEgressEndpointMap``, no egress in the way), each with its tags and
  ``mesh`` as metadata and its ``kuma.io/zone`` as locality
  (``zone_ingress.ingress_load_assignment``).

An ExternalService another zone's ingress lists (tagged with that zone's ``kuma.io/zone``) is
one of these services: this egress passes it through to that zone's ingress, which hands it to
its own zone's egress (Kuma's egress → ingress → egress).
"""

from __future__ import annotations

from typing import NamedTuple

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2

from .endpoints import Endpoint
from .zone_ingress import Subset, ingress_cluster, ingress_load_assignment, service_chains


class RemoteService(NamedTuple):
    """One service of one mesh that other zones' ingresses list, as this zone's egress carries
    it."""

    mesh: str
    service: str
    #: The subsets the mesh's routes send to (filter chains beside the whole service).
    subsets: tuple[Subset, ...]
    #: The remote ingresses' endpoints (weight = instances), sorted.
    endpoints: tuple[Endpoint, ...]


class RemoteParts(NamedTuple):
    chains: tuple[listener_components_pb2.FilterChain, ...]
    cluster: cluster_pb2.Cluster
    load_assignment: endpoint_pb2.ClusterLoadAssignment


def remote_parts(item: RemoteService) -> RemoteParts:
    chains, relevant = service_chains(item.mesh, item.service, item.subsets, item.endpoints)
    return RemoteParts(
        chains,
        ingress_cluster(item.mesh, item.service, relevant),
        ingress_load_assignment(item.mesh, item.service, item.endpoints),
    )

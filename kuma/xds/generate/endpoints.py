"""Endpoints of services and their ClusterLoadAssignments.

An endpoint of service S is a healthy inbound tagged ``kuma.io/service: S`` on any Dataplane
of the mesh (Kuma's ``fillDataplaneOutbounds`` in ``pkg/xds/topology/outbound.go``): its
address is the Dataplane's advertisedAddress, else the inbound's address, else
``networking.address``; its port is the inbound's ``port`` (Envoy's side, not servicePort);
its tags become endpoint metadata and ``kuma.io/zone`` its locality. Gateways have no
inbounds and so are endpoints of nothing. Addresses are used as given: Kuma resolves DNS
names in ``networking.address`` before generation, and so must whoever calls these functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2

from kuma.resources.model import PROTOCOL_TAG, SERVICE_TAG, ZONE_TAG, Dataplane

from ._pb import LB_METADATA_KEY, set_socket_address, set_tags
from .protocol import infer_protocol

#: Kuma skips "serviceless" inbounds on this IANA-reserved port.
SERVICELESS_PORT = 49151


class Endpoint(msgspec.Struct, frozen=True):
    """One instance of a service as other proxies reach it. Hashable, compared by value."""

    address: str
    port: int
    #: The inbound's tags (``kuma.io/service`` included), sorted by key.
    tags: tuple[tuple[str, str], ...] = ()
    #: ``kuma.io/zone`` of the inbound, the endpoint's locality; None when untagged.
    zone: str | None = None
    #: A remote zone's ingress: the instances behind it (``cross_zone.py``); 0 for a local
    #: endpoint, whose weight the mesh's :class:`~.cross_zone.LocalityPlan` gives.
    weight: int = 0

    @classmethod
    def of(cls, address: str, port: int, tags: Mapping[str, str], weight: int = 0) -> Endpoint:
        return cls(address, port, tuple(sorted(tags.items())), tags.get(ZONE_TAG), weight)

    @property
    def protocol_tag(self) -> str | None:
        for key, value in self.tags:
            if key == PROTOCOL_TAG:
                return value
        return None

    def sort_key(self) -> tuple[str, str, int, tuple[tuple[str, str], ...], int]:
        return (self.zone or "", self.address, self.port, self.tags, self.weight)


def endpoints_of(dataplane: Dataplane) -> list[tuple[str, Endpoint]]:
    """(service, endpoint) for every healthy inbound of ``dataplane``, in inbound order."""
    networking = dataplane.networking
    if networking is None or networking.gateway is not None:
        return []
    result: list[tuple[str, Endpoint]] = []
    for inbound in networking.inbound:
        service = inbound.service
        if not service or not inbound.is_healthy or inbound.port == SERVICELESS_PORT:
            continue
        address = inbound.advertised_address(networking)
        result.append((service, Endpoint.of(address, inbound.port, inbound.tags)))
    return result


def service_protocol(endpoints: Sequence[Endpoint]) -> str:
    """The protocol of a service from its (healthy) endpoints, as Kuma infers it."""
    return infer_protocol(e.protocol_tag for e in endpoints)


def _add_lb_endpoint(
    group: endpoint_components_pb2.LocalityLbEndpoints, endpoint: Endpoint, local_weight: int
) -> None:
    lb = group.lb_endpoints.add()
    set_socket_address(lb.endpoint.address, endpoint.address, endpoint.port)
    lb.load_balancing_weight.value = endpoint.weight or local_weight
    # The service is already the cluster's name: Kuma leaves it out of the metadata.
    lb_tags = [(k, v) for k, v in endpoint.tags if k != SERVICE_TAG]
    if lb_tags:
        set_tags(lb.metadata, LB_METADATA_KEY, lb_tags)


def load_assignment(
    cluster: str,
    endpoints: Sequence[Endpoint],
    local_weight: int = 1,
    priority_zone: str | None = None,
) -> endpoint_pb2.ClusterLoadAssignment:
    """The ClusterLoadAssignment of the cluster named ``cluster`` (a service's name, or a
    subset's: ``destination.py`` selects its endpoints): endpoints grouped by zone (the
    untagged group first, then zones in name order), each group sorted by address then port.
    A local endpoint weighs ``local_weight``, a remote ingress its instances; every group is at
    priority 0 unless ``priority_zone`` (locality-aware load balancing) puts the other zones at
    1 (``cross_zone.py``)."""
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=cluster)
    group: endpoint_components_pb2.LocalityLbEndpoints | None = None
    zone: str | None = None
    for endpoint in sorted(endpoints, key=Endpoint.sort_key):
        if group is None or endpoint.zone != zone:
            zone = endpoint.zone
            group = cla.endpoints.add()
            if zone is not None:
                group.locality.zone = zone
                if priority_zone is not None and zone != priority_zone:
                    group.priority = 1
        _add_lb_endpoint(group, endpoint, local_weight)
    return cla

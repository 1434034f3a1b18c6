"""Where an outbound sends its traffic: a service, optionally narrowed to a subset by tags.

An outbound tagged only ``kuma.io/service: backend`` reaches every endpoint of ``backend``
through the cluster ``backend``. An outbound with more tags (``version: v1``) reaches only the
endpoints whose tags include all of them, through a cluster of its own named
``<service>-<16 hex digits>`` (Kuma v2.7: ``Tags.DestinationClusterName`` in
``pkg/xds/envoy/tags/match.go``, endpoints filtered by ``Endpoint.ContainsTags`` in
``pkg/xds/cache/cla/cache.go``). The hex digits are the first 8 bytes of SHA-256 over the
tags' keys and values, key by key in sorted order, so the name is the same wherever it is
computed (Kuma's own control plane, dashboards keyed on cluster names, every kuma-py instance).

The subset's protocol is still the service's (Kuma infers it from every endpoint of the
service), and so is the shape of its cluster: only the name and the endpoints differ.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import msgspec
from envoy.config.endpoint.v3 import endpoint_pb2

from kuma.resources.model import SERVICE_TAG

from .cross_zone import LOCAL_ONLY, LocalityPlan
from .endpoints import Endpoint, load_assignment

#: Kuma keeps this tag out of a destination's identity (it marks cross-mesh gateway targets,
#: which this project does not generate).
MESH_TAG = "kuma.io/mesh"


def destination_cluster_name(
    service: str,
    subset: Iterable[tuple[str, str]] = (),
    identity: Iterable[tuple[str, str]] = (),
) -> str:
    """Kuma's cluster name for ``service`` narrowed by ``subset`` (tags other than
    ``kuma.io/service``): the service itself when there are none. ``identity``: Kuma's
    ``additionalIdentifyingTags`` (a builtin gateway's listener tags), hashed after them."""
    tags = dict(subset)
    extra = dict(identity)
    if not tags and not extra:
        return service
    tags[SERVICE_TAG] = service
    digest = hashlib.sha256()
    # Python orders str by code point, which is UTF-8 byte order: Go's sort.Strings.
    for part in (tags, extra):
        for key in sorted(part):
            digest.update(key.encode())
            digest.update(part[key].encode())
    return f"{service}-{digest.hexdigest()[:16]}"


class Destination(msgspec.Struct, frozen=True, order=True):
    """A service and the extra tags its endpoints must carry. Hashable, compared by value."""

    service: str
    #: Tags other than ``kuma.io/service`` (and ``kuma.io/mesh``), sorted by key.
    subset: tuple[tuple[str, str], ...] = ()
    #: Tags that name its cluster without narrowing its endpoints (a builtin gateway's
    #: listener tags, Kuma's identifying tags), sorted by key; empty for a sidecar's.
    identity: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, tags: Mapping[str, str]) -> Destination:
        """The destination of an outbound with ``tags`` (``kuma.io/service`` among them)."""
        subset = tuple(sorted((k, v) for k, v in tags.items() if k not in _NOT_SUBSET))
        return cls(tags.get(SERVICE_TAG, ""), subset)

    @property
    def cluster_name(self) -> str:
        """The name of its Cluster and ClusterLoadAssignment."""
        return destination_cluster_name(self.service, self.subset, self.identity)

    @property
    def tags(self) -> dict[str, str]:
        """Every tag of the destination, ``kuma.io/service`` included (listener metadata)."""
        return {SERVICE_TAG: self.service, **dict(self.subset)}

    def matches(self, endpoint: Endpoint) -> bool:
        """Whether ``endpoint`` (an endpoint of the service) carries every tag of the subset."""
        if not self.subset:
            return True
        tags = dict(endpoint.tags)
        return all(tags.get(key) == value for key, value in self.subset)

    def select(self, endpoints: Iterable[Endpoint]) -> list[Endpoint]:
        """The endpoints of the service that belong to this destination, in the given order."""
        return [e for e in endpoints if self.matches(e)]


def destination_load_assignment(
    destination: Destination,
    service_endpoints: Iterable[Endpoint],
    plan: LocalityPlan = LOCAL_ONLY,
) -> endpoint_pb2.ClusterLoadAssignment:
    """The ClusterLoadAssignment of ``destination`` from every endpoint of its service (remote
    ingresses' included), weighted and prioritized by its mesh's ``plan``."""
    return load_assignment(
        destination.cluster_name,
        destination.select(service_endpoints),
        plan.local_weight,
        plan.priority_zone,
    )


_NOT_SUBSET = frozenset({SERVICE_TAG, MESH_TAG})

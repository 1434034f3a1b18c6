"""A proxy's own resources as last built (its inbound listeners and clusters, its admin
resources), reused while their inputs stay.

A policy change re-assembles every proxy it selects, and building each inbound's listener and
cluster with the policies applied (then serializing them) was the largest part of that when
the change shapes only outbounds (benchmarks/RESULTS.md, issue 16): a MeshTimeout's `to`
conf leaves the inbounds as they were. The inputs of an inbound's resources are the Dataplane
(by identity: resources are immutable, a change is a new object), how the inbound is secured
(``InboundPart.mtls``) and what the policies give it (``inbound_policy_key``): equal inputs,
equal resources. The admin resources depend on the Dataplane and the two ports only. One memo
per proxy (held by its ``ProxyRecord``), so it goes with the proxy and holds only resources the
proxy holds anyway.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, cast

from kuma.policies import ProxyPolicies
from kuma.policies.plugin import inbound_policy_key
from kuma.resources import Dataplane
from kuma.xds import types
from kuma.xds.generate.admin import admin_resources
from kuma.xds.generate.inbounds import InboundPart, inbound_resources
from kuma.xds.generate.proxy import type_url_of
from kuma.xds.snapshot import VersionedResource

from .interner import Interner


class ProxyMemo:
    __slots__ = ("_admin", "_dataplane", "_held")

    def __init__(self) -> None:
        self._dataplane: Dataplane | None = None
        #: Inbound position → (its inputs, listener, cluster).
        self._held: dict[int, tuple[Hashable, VersionedResource, VersionedResource]] = {}
        #: (default admin port, readiness port) → the admin resources.
        self._admin: tuple[tuple[int, int], list[VersionedResource]] | None = None

    def _for(self, dataplane: Dataplane) -> None:
        if dataplane is not self._dataplane:
            self._dataplane, self._held, self._admin = dataplane, {}, None

    def admin(
        self, dataplane: Dataplane, default_admin_port: int, readiness_port: int, interner: Interner
    ) -> list[VersionedResource]:
        """``admin_resources``, reused while the Dataplane and the ports stay."""
        self._for(dataplane)
        ports = (default_admin_port, readiness_port)
        if self._admin is None or self._admin[0] != ports:
            built = [
                interner.intern(type_url_of(message), cast(Any, message).name, message)
                for message in admin_resources(dataplane, default_admin_port, readiness_port)
            ]
            self._admin = (ports, built)
        return self._admin[1]

    def resources(
        self,
        dataplane: Dataplane,
        parts: list[InboundPart],
        policies: ProxyPolicies,
        interner: Interner,
    ) -> list[VersionedResource]:
        """Each inbound's listener and cluster, in order: reused or built and interned."""
        self._for(dataplane)
        found: list[VersionedResource] = []
        for position, part in enumerate(parts):
            inputs = (part.mtls, inbound_policy_key(policies, part.key))
            held = self._held.get(position)
            if held is None or held[0] != inputs:
                listener, cluster = inbound_resources(dataplane, part, policies)
                held = self._held[position] = (
                    inputs,
                    interner.intern(types.LISTENER, listener.name, listener),
                    interner.intern(types.CLUSTER, cluster.name, cluster),
                )
            found.append(held[1])
            found.append(held[2])
        return found

"""What a policy's top-level targetRef selects of a proxy (Kuma's
``pkg/plugins/policies/core/matchers/dataplane.go``): a Dataplane's inbounds by their tags
(``Mesh``: all, ``MeshSubset``: by tags, ``MeshService``: by ``kuma.io/service``,
``MeshServiceSubset``: both), ``proxyTypes`` restricting Mesh/MeshSubset to sidecars or
gateways, a delegated gateway by its gateway tags, a builtin gateway's listeners by their merged
tags (or a ``MeshGateway`` targetRef). ``matching`` orders what is selected and makes the rules.
"""

from __future__ import annotations

from collections.abc import Mapping

from kuma.resources.model import (
    MESH,
    MESH_GATEWAY,
    MESH_HTTP_ROUTE,
    MESH_SERVICE,
    MESH_SERVICE_SUBSET,
    MESH_SUBSET,
    SERVICE_TAG,
    Dataplane,
    MeshGateway,
    Policy,
    TargetRef,
)

#: An inbound as Kuma keys from-rules: (dataplane IP, dataplane port).
InboundKey = tuple[str, int]
#: A builtin gateway's listener as Kuma keys per-hostname rules: (address, port, hostname).
HostKey = tuple[str, int, str]

SIDECAR = "Sidecar"
GATEWAY = "Gateway"


def proxy_type(dataplane: Dataplane) -> str:
    return GATEWAY if dataplane.is_gateway else SIDECAR


def tags_match(selector: Mapping[str, str], tags: Mapping[str, str]) -> bool:
    """Kuma's TagSelector.Matches (``*`` matches any value of a present tag)."""
    for key, value in selector.items():
        actual = tags.get(key)
        if actual is None or (value != "*" and actual != value):
            return False
    return True


def selector_of(ref: TargetRef) -> dict[str, str] | None:
    if ref.kind in (MESH, MESH_SUBSET):
        return dict(ref.tags) if ref.kind == MESH_SUBSET else {}
    if ref.kind == MESH_SERVICE:
        return {SERVICE_TAG: ref.name}
    if ref.kind == MESH_SERVICE_SUBSET:
        return {SERVICE_TAG: ref.name, **ref.tags}
    return None  # MeshGateway (no policy on builtin gateways yet), MeshHTTPRoute, unknown


def selected_inbounds(
    ref: TargetRef, dataplane: Dataplane, routes: Mapping[str, Policy] | None = None
) -> tuple[list[InboundKey], bool]:
    """(the inbounds the targetRef selects, whether it selects the delegated gateway)."""
    if ref.kind == MESH_HTTP_ROUTE:
        route = (routes or {}).get(ref.name)
        if route is None:
            return [], False
        return selected_inbounds(route.spec.target_ref, dataplane, None)
    selector = selector_of(ref)
    if selector is None:
        return [], False
    restricted = ref.kind in (MESH, MESH_SUBSET) and ref.proxy_types
    if restricted and proxy_type(dataplane) not in ref.proxy_types:
        return [], False
    networking = dataplane.networking
    if networking is None:
        return [], False
    inbounds = [
        (inbound.effective_address(networking), inbound.port)
        for inbound in networking.inbound
        if tags_match(selector, inbound.tags)
    ]
    gateway = networking.gateway
    delegated = (
        gateway is not None and gateway.type == "DELEGATED" and tags_match(selector, gateway.tags)
    )
    return inbounds, delegated


def selects(
    policy: Policy, dataplane: Dataplane, routes: Mapping[str, Policy] | None = None
) -> bool:
    inbounds, delegated = selected_inbounds(policy.spec.target_ref, dataplane, routes)
    return bool(inbounds) or delegated


# A targetRef's selector and proxy-type restriction, per targetRef object (policies are
# immutable and shared, so this is computed once per policy version); the entry holds the
# targetRef, so its identity is not reused while cached.
_COMPILED_LIMIT = 65536
_compiled_cache: dict[int, tuple[TargetRef, tuple[dict[str, str] | None, tuple[str, ...]]]] = {}


def _compiled(ref: TargetRef) -> tuple[dict[str, str] | None, tuple[str, ...]]:
    cached = _compiled_cache.get(id(ref))
    if cached is not None and cached[0] is ref:
        return cached[1]
    proxy_types = ref.proxy_types if ref.kind in (MESH, MESH_SUBSET) else ()
    result = (selector_of(ref), proxy_types)
    if len(_compiled_cache) >= _COMPILED_LIMIT:
        _compiled_cache.clear()
    _compiled_cache[id(ref)] = (ref, result)
    return result


class SelectedProxy:
    """What matching reads of a Dataplane, computed once per resolution. A builtin gateway's
    listeners (given its MeshGateway) are selected as Kuma selects them: each listener as the
    inbound ``(address, port)`` with the Dataplane's gateway tags, the MeshGateway's and the
    listener's merged; a ``MeshGateway`` targetRef selects those of the named MeshGateway
    whose tags carry its ``tags``."""

    __slots__ = ("dataplane", "gateway", "gateway_tags", "inbounds", "listeners", "proxy_type")

    def __init__(self, dataplane: Dataplane, gateway: MeshGateway | None = None) -> None:
        self.dataplane = dataplane
        self.proxy_type = proxy_type(dataplane)
        networking = dataplane.networking
        self.inbounds: list[tuple[InboundKey, Mapping[str, str]]] = []
        self.gateway_tags: Mapping[str, str] | None = None
        self.gateway = gateway
        self.listeners: list[tuple[HostKey, Mapping[str, str]]] = []
        if networking is not None:
            self.inbounds = [
                ((inbound.effective_address(networking), inbound.port), inbound.tags)
                for inbound in networking.inbound
            ]
            own = networking.gateway
            if own is not None and own.type == "DELEGATED":
                self.gateway_tags = own.tags
            if own is not None and gateway is not None and gateway.conf is not None:
                self.listeners = [
                    (
                        (networking.address, listener.port, listener.effective_hostname),
                        {**own.tags, **(gateway.tags or {}), **listener.tags},
                    )
                    for listener in gateway.conf.listeners
                ]

    def selected(
        self, ref: TargetRef, routes: Mapping[str, Policy]
    ) -> tuple[list[InboundKey], bool]:
        if ref.kind == MESH_HTTP_ROUTE:
            route = routes.get(ref.name)
            if route is None:
                return [], False
            return self.selected(route.spec.target_ref, {})
        if self.listeners:
            return sorted({host[:2] for host in self.hosts(ref, routes)}), False
        compiled = _compiled(ref)
        selector, proxy_types = compiled
        if selector is None:
            return [], False
        if proxy_types and self.proxy_type not in proxy_types:
            return [], False
        if not selector:
            return [key for key, _ in self.inbounds], self.gateway_tags is not None
        inbounds = [key for key, tags in self.inbounds if tags_match(selector, tags)]
        gateway = self.gateway_tags
        return inbounds, gateway is not None and tags_match(selector, gateway)

    def hosts(self, ref: TargetRef, routes: Mapping[str, Policy]) -> list[HostKey]:
        """A builtin gateway's listeners (address, port, hostname) the targetRef selects."""
        if ref.kind == MESH_HTTP_ROUTE:
            route = routes.get(ref.name)
            return [] if route is None else self.hosts(route.spec.target_ref, {})
        if ref.kind == MESH_GATEWAY:
            if self.gateway is None or ref.name != self.gateway.name:
                return []
            selector: Mapping[str, str] | None = ref.tags
        else:
            selector, proxy_types = _compiled(ref)
            if proxy_types and self.proxy_type not in proxy_types:
                return []
        if selector is None:
            return []
        return [host for host, tags in self.listeners if tags_match(selector, tags)]

"""The Envoy side of policies: each kind's plugin changes the listeners and clusters the
generator built, as Kuma's policy plugins do after its generators ran.

A plugin is called only for kinds that select the proxy (``KindPolicies``), with the
resource and what it is for (an outbound service, an inbound). The generator calls
:func:`apply_outbound_listener` and friends; plugins run in Kuma's plugin order.

Shared resources: an outbound service's cluster and listener depend on the proxy only through
the confs its policies give that service, so :func:`outbound_fingerprint` (those confs,
canonically serialized) is part of the key under which the engine shares them. It has one
part per resource kind: a kind's conf enters the listener part only if the kind shapes
outbound listeners, the cluster part only if it shapes clusters, and a plugin may narrow
its conf to the fields each hook reads (MeshTimeout's ``connectionTimeout`` shapes clusters
only). So a policy change rebuilds what it shapes and finds the rest already built.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any, NamedTuple

import orjson
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as upstream_http_pb2

from kuma import jsonbytes
from kuma.resources.model import SERVICE_TAG
from kuma.resources.policy import PolicyKind

from .decoded import DecodedFilters, edit
from .matching import InboundKey, KindPolicies, ProxyPolicies
from .rules import Rule

HCM_TYPE = "type.googleapis.com/" + hcm_pb2.HttpConnectionManager.DESCRIPTOR.full_name
TCP_PROXY_TYPE = "type.googleapis.com/" + tcp_proxy_pb2.TcpProxy.DESCRIPTOR.full_name
HTTP_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
HTTP_PROTOCOLS = ("http", "http2", "grpc")

Chain = listener_components_pb2.FilterChain


#: Where routed traffic goes: a service and the tags its endpoints must carry (sorted; empty:
#: the whole service). The generator names its cluster (``<service>-<hash>``).
Backend = tuple[str, tuple[tuple[str, str], ...]]
ClusterNamer = Callable[[str, tuple[tuple[str, str], ...]], str]


@dataclass(frozen=True)
class OutboundPlan:
    """What a routing kind (MeshHTTPRoute, MeshTCPRoute) makes of one outbound: the backends
    its listener sends to (each needs a cluster and endpoints), the protocols of the services
    it looked at (they shape the routes, so they are part of the shared listener's key), and
    how it rewrites the outbound listener the generator built."""

    backends: tuple[Backend, ...]
    protocols: tuple[tuple[str, str], ...]
    rewrite: Callable[[listener_pb2.Listener, ClusterNamer], None]


class PolicyPlugin:
    """Base of a kind's Envoy change; every hook does nothing unless overridden."""

    kind: PolicyKind
    #: True if the kind's ``outbound_listener_input`` / ``outbound_cluster_input`` read more
    #: of ``policies`` than the kind, whether it has ``to`` rules and the ``rule`` (the proxy
    #: itself): they are then called per (proxy, service) instead of once per rule
    #: (:func:`outbound_fingerprint`).
    outbound_input_reads_proxy = False

    def outbound_listener_input(self, policies: KindPolicies, rule: Rule | None) -> Any:
        """What of the kind's ``to`` rule for a service (``rule``) its ``outbound_listener``
        and ``outbound_plan`` hooks read: part of the shared outbound listener's key, so it
        must capture everything they read. Called only for kinds that override one of them."""
        return [bool(policies.to_rules), rule.conf if rule else None]

    def outbound_cluster_input(self, policies: KindPolicies, rule: Rule | None) -> Any:
        """As :meth:`outbound_listener_input`, for what ``outbound_cluster`` reads."""
        return [bool(policies.to_rules), rule.conf if rule else None]

    def inbound_input(self, policies: KindPolicies, inbound: InboundKey) -> Hashable:
        """What the kind's ``inbound_listener`` and ``inbound_cluster`` hooks read for
        ``inbound``: part of the key under which the engine reuses a proxy's inbound
        listener and cluster (:func:`inbound_policy_key`), so it must capture everything
        they read. The default is the matched policies themselves (by identity: a new
        version of one rebuilds); a kind may narrow it to the confs its hooks read."""
        return Same((*policies.policies, policies.access_log_socket))

    def outbound_plan(
        self,
        policies: ProxyPolicies,
        tags: Mapping[str, str],
        protocol: str,
        protocol_of: Callable[[str], str],
    ) -> OutboundPlan | None:
        """Routing kinds: how the outbound with ``tags`` (its service's ``protocol``) is
        routed, or None to keep the generator's single route to its destination."""
        return None

    def outbound_listener(
        self, listener: listener_pb2.Listener, policies: KindPolicies, service: str, protocol: str
    ) -> None:
        pass

    def outbound_cluster(
        self, cluster: cluster_pb2.Cluster, policies: KindPolicies, service: str, protocol: str
    ) -> None:
        """Edit a service cluster. It must read nothing of ``service`` but what
        :meth:`outbound_cluster_input` captures, and must neither read nor change the fields
        naming the destination (name, stat name, transport socket): the engine runs it once
        per (protocol, fingerprint) and copies the result into each destination's cluster
        (``kuma.xds.generate.outbounds.policy_service_cluster``)."""

    def inbound_listener(
        self,
        listener: listener_pb2.Listener,
        policies: KindPolicies,
        inbound: InboundKey,
        protocol: str,
    ) -> None:
        pass

    def inbound_cluster(
        self,
        cluster: cluster_pb2.Cluster,
        policies: KindPolicies,
        inbound: InboundKey,
        protocol: str,
    ) -> None:
        pass

    def passthrough_listener(self, listener: listener_pb2.Listener, policies: KindPolicies) -> None:
        """A transparent proxy's outbound passthrough listener (traffic to addresses outside
        the mesh); it is the proxy's own, so it is in no fingerprint."""

    def egress_chain(
        self, chain: listener_components_pb2.FilterChain, policies: KindPolicies, protocol: str
    ) -> None:
        """Kuma's ZoneEgress branch of the kind's plugin: the filter chain a ZoneEgress serves
        an ExternalService with (``protocol``: its ``kuma.io/protocol``), the policies those
        that select it (``kuma.policies.egress``). Only kinds overriding this are matched."""

    def egress_cluster(
        self, cluster: cluster_pb2.Cluster, policies: KindPolicies, zone: str
    ) -> None:
        """As :meth:`egress_chain`, for the egress's cluster to the external service (``zone``:
        the egress's)."""

    def own_clusters(self, policies: KindPolicies) -> list[cluster_pb2.Cluster]:
        """Clusters the kind adds to the proxy (MeshAccessLog's collectors); the proxy's own."""
        return []


PLUGINS: list[PolicyPlugin] = []


#: The plugins overriding ``outbound_plan`` (the routing kinds), in plugin order.
_ROUTING: list[PolicyPlugin] = []


def register_plugin(plugin: PolicyPlugin) -> PolicyPlugin:
    PLUGINS.append(plugin)
    PLUGINS.sort(key=lambda p: p.kind.order)
    _ROUTING[:] = [p for p in PLUGINS if type(p).outbound_plan is not PolicyPlugin.outbound_plan]
    return plugin


def service_element(service: str) -> dict[str, str]:
    return {SERVICE_TAG: service}


class OutboundFingerprint(NamedTuple):
    """What a proxy's policies make of one outbound service, canonically serialized and hashed:
    one part keys its shared outbound listeners, the other its clusters (``b""``: nothing)."""

    listener: bytes
    cluster: bytes

    def __bool__(self) -> bool:
        return bool(self.listener or self.cluster)


NO_FINGERPRINT = OutboundFingerprint(b"", b"")


#: Plugin class -> (shapes outbound listeners, shapes outbound clusters): the hooks it overrides.
_SHAPES: dict[type[PolicyPlugin], tuple[bool, bool]] = {}


def _shapes(plugin: PolicyPlugin) -> tuple[bool, bool]:
    cls = type(plugin)
    found = _SHAPES.get(cls)
    if found is None:

        def overrides(*hooks: str) -> bool:
            return any(getattr(cls, hook) is not getattr(PolicyPlugin, hook) for hook in hooks)

        found = _SHAPES[cls] = (
            overrides("outbound_listener", "outbound_plan"),
            overrides("outbound_cluster"),
        )
    return found


def outbound_fingerprint(policies: ProxyPolicies, service: str) -> OutboundFingerprint:
    """The confs the proxy's policies give ``service``, split by the resource they shape."""
    return outbound_fingerprints(policies)(service)


def outbound_fingerprints(policies: ProxyPolicies) -> Callable[[str], OutboundFingerprint]:
    """:func:`outbound_fingerprint` of the proxy's services, one call per service: the kinds
    that match the proxy are found once (in plugin order) instead of once per service (a proxy
    matches a few of the kinds; its assembly asks for each of its outbound services)."""
    if not policies:
        return _no_fingerprint
    by_kind = policies.by_kind
    kinds = [
        (plugin, matched)
        for plugin in PLUGINS
        if (matched := by_kind.get(plugin.kind.name)) is not None
    ]
    return lambda service: _fingerprint(kinds, service)


def _no_fingerprint(service: str) -> OutboundFingerprint:
    return NO_FINGERPRINT


def _fingerprint(
    kinds: list[tuple[PolicyPlugin, KindPolicies]], service: str
) -> OutboundFingerprint:
    element = service_element(service)
    listener = blake2b(digest_size=16)
    cluster = blake2b(digest_size=16)
    shaped_listener = shaped_cluster = False
    for plugin, matched in kinds:
        rule = matched.to_rules.compute(element)
        parts = (
            _parts(plugin, matched, rule)
            if plugin.outbound_input_reads_proxy
            else _rule_parts(plugin, matched, rule)
        )
        if parts[0] is not None:
            listener.update(parts[0])
            shaped_listener = True
        if parts[1] is not None:
            cluster.update(parts[1])
            shaped_cluster = True
    return OutboundFingerprint(
        listener.digest() if shaped_listener else b"",
        cluster.digest() if shaped_cluster else b"",
    )


#: (kind, whether it has ``to`` rules) -> its parts of the fingerprint for a service no rule
#: covers.
_NO_RULE_PARTS: dict[tuple[str, bool], tuple[bytes | None, bytes | None]] = {}


def _rule_parts(
    plugin: PolicyPlugin, matched: KindPolicies, rule: Rule | None
) -> tuple[bytes | None, bytes | None]:
    """:func:`_parts`, kept on the rule: a rule is one object for every proxy with the same
    policies (``matching._rules`` caches them by the policies' identities) and, for a rule on
    many services (``Mesh``), for every such service, so a policy change's selected proxies
    serialize each rule's inputs once instead of once per (proxy, service)."""
    if rule is None:
        key = (plugin.kind.name, bool(matched.to_rules))
        found = _NO_RULE_PARTS.get(key)
        if found is None:
            found = _NO_RULE_PARTS[key] = _parts(plugin, matched, None)
        return found
    parts: tuple[bytes | None, bytes | None] | None = rule.outbound_parts
    if parts is None:
        parts = rule.outbound_parts = _parts(plugin, matched, rule)
    return parts


def _parts(
    plugin: PolicyPlugin, matched: KindPolicies, rule: Rule | None
) -> tuple[bytes | None, bytes | None]:
    """What the kind's rule gives the listener and the cluster part of a fingerprint,
    canonically serialized and prefixed with the kind's name and its length (so the parts'
    concatenation is unambiguous); None for a part the kind does not shape."""
    shapes_listener, shapes_cluster = _shapes(plugin)
    name = plugin.kind.name
    return (
        _canonical(name, plugin.outbound_listener_input(matched, rule))
        if shapes_listener
        else None,
        _canonical(name, plugin.outbound_cluster_input(matched, rule)) if shapes_cluster else None,
    )


class Same:
    """Objects compared by identity (held, so their ids are not reused while compared)."""

    __slots__ = ("_hash", "items")

    def __init__(self, items: tuple[object, ...]) -> None:
        self.items = items
        self._hash = hash(tuple(map(id, items)))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Same)
            and len(other.items) == len(self.items)
            and all(a is b for a, b in zip(self.items, other.items, strict=True))
        )


#: ``from_rule_input`` of an inbound no policy of the kind selects.
UNSELECTED = "unselected"


def from_rule_input(policies: KindPolicies, inbound: InboundKey) -> Hashable:
    """An ``inbound_input`` for kinds whose inbound hooks read only the inbound's rule for
    every caller (``from_rules[inbound].compute({})``): its merged conf, serialized."""
    rules = policies.from_rules.get(inbound)
    if rules is None:
        return UNSELECTED
    rule = rules.compute({})
    # Kept in the inbound memo of every proxy: exact-size bytes (kuma/jsonbytes.py).
    return None if rule is None else jsonbytes.dumps(rule.conf, sort_keys=True)


#: Plugin class -> whether it overrides an inbound hook.
_INBOUND: dict[type[PolicyPlugin], bool] = {}


def inbound_policy_key(policies: ProxyPolicies, inbound: InboundKey) -> tuple[Hashable, ...]:
    """What the proxy's policies give ``inbound``'s listener and cluster, per kind with an
    inbound hook (:meth:`PolicyPlugin.inbound_input`): equal keys, equal resources (for the
    same Dataplane and mTLS)."""
    if not policies:
        return ()
    key: list[Hashable] = []
    for plugin in PLUGINS:
        matched = policies.get(plugin.kind.name)
        if matched is None:
            continue
        cls = type(plugin)
        hooks = _INBOUND.get(cls)
        if hooks is None:
            hooks = _INBOUND[cls] = any(
                getattr(cls, hook) is not getattr(PolicyPlugin, hook)
                for hook in ("inbound_listener", "inbound_cluster")
            )
        if hooks:
            key.append((plugin.kind.name, plugin.inbound_input(matched, inbound)))
    return tuple(key)


def _canonical(name: str, value: Any) -> bytes:
    # The fingerprint keeps a digest of these, not them: the keys only compare, and every key
    # of every proxy's outbounds holds one (the confs of a mesh with one policy of each kind
    # run to about 4 KB: 25 KB per proxy at six outbounds, benchmarks/bench_memory.py).
    body = orjson.dumps([name, value], option=orjson.OPT_SORT_KEYS)
    return len(body).to_bytes(4, "big") + body


def plan_outbound(
    policies: ProxyPolicies,
    tags: Mapping[str, str],
    protocol: str,
    protocol_of: Callable[[str], str],
) -> OutboundPlan | None:
    """The first routing plan a plugin makes for the outbound (Kuma's plugin order)."""
    if not policies:
        return None
    for plugin in _ROUTING:
        if plugin.kind.name in policies.by_kind:
            plan = plugin.outbound_plan(policies, tags, protocol, protocol_of)
            if plan is not None:
                return plan
    return None


def apply_outbound_listener(
    listener: listener_pb2.Listener, policies: ProxyPolicies, service: str, protocol: str
) -> None:
    with DecodedFilters():
        for plugin in PLUGINS:
            matched = policies.get(plugin.kind.name)
            if matched is not None:
                plugin.outbound_listener(listener, matched, service, protocol)


def apply_outbound_cluster(
    cluster: cluster_pb2.Cluster, policies: ProxyPolicies, service: str, protocol: str
) -> None:
    for plugin in PLUGINS:
        matched = policies.get(plugin.kind.name)
        if matched is not None:
            plugin.outbound_cluster(cluster, matched, service, protocol)


def apply_inbound(
    listener: listener_pb2.Listener,
    cluster: cluster_pb2.Cluster,
    policies: ProxyPolicies,
    inbound: InboundKey,
    protocol: str,
) -> None:
    with DecodedFilters():
        for plugin in PLUGINS:
            matched = policies.get(plugin.kind.name)
            if matched is not None:
                plugin.inbound_listener(listener, matched, inbound, protocol)
                plugin.inbound_cluster(cluster, matched, inbound, protocol)


def apply_passthrough(listener: listener_pb2.Listener, policies: ProxyPolicies) -> None:
    for plugin in PLUGINS:
        matched = policies.get(plugin.kind.name)
        if matched is not None:
            plugin.passthrough_listener(listener, matched)


def own_clusters(policies: ProxyPolicies) -> list[cluster_pb2.Cluster]:
    found: list[cluster_pb2.Cluster] = []
    for plugin in PLUGINS:
        matched = policies.get(plugin.kind.name)
        if matched is not None:
            found.extend(plugin.own_clusters(matched))
    return found


# --- helpers for plugins: edit a packed filter in place -------------------------------------


def update_hcm(
    chain: listener_components_pb2.FilterChain,
    change: Callable[[hcm_pb2.HttpConnectionManager], None],
) -> bool:
    """Change the chain's HTTP connection manager (decoded once per ``DecodedFilters``
    block: ``decoded.py``); False if none."""
    return edit(chain, hcm_pb2.HttpConnectionManager, change)


def update_tcp_proxy(
    chain: listener_components_pb2.FilterChain, change: Callable[[tcp_proxy_pb2.TcpProxy], None]
) -> bool:
    return edit(chain, tcp_proxy_pb2.TcpProxy, change)


def update_http_options(
    cluster: cluster_pb2.Cluster, change: Callable[[upstream_http_pb2.HttpProtocolOptions], None]
) -> None:
    """Kuma's UpdateCommonHttpProtocolOptions: the cluster's upstream HTTP options (created
    when absent), changed and packed back."""
    options = upstream_http_pb2.HttpProtocolOptions()
    packed = cluster.typed_extension_protocol_options.get(HTTP_OPTIONS_KEY)
    if packed is not None:
        options.ParseFromString(packed.value)
    change(options)
    target = cluster.typed_extension_protocol_options[HTTP_OPTIONS_KEY]
    target.type_url = "type.googleapis.com/" + options.DESCRIPTOR.full_name
    target.value = options.SerializeToString(deterministic=True)


def set_duration(target: Any, nanoseconds: int) -> None:
    """Set a ``google.protobuf.Duration`` field from nanoseconds (0 gives ``0s``)."""
    target.seconds, target.nanos = divmod(nanoseconds, 1_000_000_000)
    target.SetInParent()


def insert_before_router(
    manager: hcm_pb2.HttpConnectionManager, filters: list[hcm_pb2.HttpFilter]
) -> None:
    """Kuma's InsertHTTPFiltersBeforeRouter: ``filters`` in order, just before the router
    (at the end when there is none)."""
    current = list(manager.http_filters)
    position = next(
        (i for i, f in enumerate(current) if f.name == "envoy.filters.http.router"), len(current)
    )
    # Protobuf repeated fields insert only at the end: rebuild the list in its new order.
    del manager.http_filters[:]
    manager.http_filters.extend(current[:position] + filters + current[position:])

"""MeshTCPRoute (Kuma ``pkg/plugins/policies/meshtcproute``): weighted backendRefs for an
outbound's TCP proxy.

A ``to`` item's conf is its first rule, or without rules one backendRef to its own targetRef
with weight 1 (Kuma's ``To.GetDefault``); confs merge as every kind's. Envoy change, as
Kuma's plugin: the outbound's filter chain becomes a ``tcp_proxy`` (stat prefix = service)
to one cluster or ``weighted_clusters`` over the backends (services or subsets of them, each
a ``<service>-<hash>`` cluster); a weight of 0 drops a backendRef. For an HTTP service
(http, http2, grpc) a MeshHTTPRoute rule for the service takes precedence, and without a
MeshTCPRoute rule the generator's HTTP listener stays.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import msgspec
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from kuma.resources.errors import Violation
from kuma.resources.model import (
    MESH,
    MESH_GATEWAY,
    MESH_SERVICE,
    MESH_SERVICE_SUBSET,
    MESH_SUBSET,
    SERVICE_TAG,
    Policy,
    PolicyConf,
    TargetRef,
)
from kuma.resources.policy import PolicyKind, register

from .backendref import BACKEND_KINDS, BackendRef, RouteSpec, check_backend_refs, weight_of
from .decoded import settle
from .matching import ProxyPolicies
from .meshhttproute.api import KIND as HTTP_ROUTE
from .meshhttproute.envoy import backend_of
from .plugin import (
    HTTP_PROTOCOLS,
    TCP_PROXY_TYPE,
    Backend,
    ClusterNamer,
    OutboundPlan,
    PolicyPlugin,
    register_plugin,
    service_element,
)


class RuleConf(PolicyConf, frozen=True):
    backend_refs: tuple[BackendRef, ...] | None = None


class Rule(PolicyConf, frozen=True):
    default: RuleConf = msgspec.field(default_factory=RuleConf)


class To(PolicyConf, frozen=True):
    target_ref: TargetRef = msgspec.field(default_factory=TargetRef)
    rules: tuple[Rule, ...] = ()

    @property
    def default(self) -> Rule:
        """Kuma's ``To.GetDefault``: the first rule, or the targetRef itself, weight 1."""
        if self.rules:
            return self.rules[0]
        ref = BackendRef(
            kind=self.target_ref.kind,
            name=self.target_ref.name,
            tags=dict(self.target_ref.tags),
            mesh=self.target_ref.mesh,
            weight=1,
        )
        return Rule(default=RuleConf(backend_refs=(ref,)))


class MeshTCPRoute(Policy, tag="MeshTCPRoute", frozen=True):
    spec: RouteSpec[To] = msgspec.field(default_factory=RouteSpec)  # type: ignore[assignment]
    TYPE: ClassVar[str] = "MeshTCPRoute"


def _validate_lists(spec: Any, out: list[Violation]) -> None:
    for index, item in enumerate(spec.to):
        for r, rule in enumerate(item.rules):
            path = f"spec.to[{index}].rules[{r}].default.backendRefs"
            check_backend_refs(out, path, rule.default.backend_refs or ())


KIND = register(
    PolicyKind(
        name="MeshTCPRoute",
        cls=MeshTCPRoute,
        plural="meshtcproutes",
        conf_type=Rule,
        top_kinds=(MESH, MESH_SUBSET, MESH_GATEWAY, MESH_SERVICE, MESH_SERVICE_SUBSET),
        to_kinds=(MESH_SERVICE,),
        validate_lists=_validate_lists,
        # Kuma's plugin order: routes come first, MeshHTTPRoute before MeshTCPRoute.
        order=2,
        restricting_tops=(MESH_GATEWAY,),
        gateway_listener_tags=True,
    )
)


def _tcp_proxy(stat_prefix: str, split: list[tuple[Backend, int]], name: ClusterNamer) -> Any:
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=stat_prefix)
    if len(split) == 1:
        proxy.cluster = name(*split[0][0])
    else:
        for backend, weight in split:
            proxy.weighted_clusters.clusters.add(name=name(*backend), weight=weight)
    return proxy


class MeshTCPRoutePlugin(PolicyPlugin):
    kind = KIND

    def outbound_plan(
        self,
        policies: ProxyPolicies,
        tags: Mapping[str, str],
        protocol: str,
        protocol_of: Callable[[str], str],
    ) -> OutboundPlan | None:
        matched = policies.get(KIND.name)
        if matched is None:
            return None
        service = tags.get(SERVICE_TAG, "")
        element = service_element(service)
        rule = matched.to_rules.compute(element)
        if rule is None:
            return None
        if protocol in HTTP_PROTOCOLS:
            # Kuma: a MeshHTTPRoute conf for an HTTP service takes precedence.
            http = policies.get(HTTP_ROUTE.name)
            http_rule = http.to_rules.compute(element) if http is not None else None
            if http_rule is not None:
                return None
        conf: Rule = matched.conf(rule)
        split = [
            (backend_of(ref), weight_of(ref))
            for ref in conf.default.backend_refs or ()
            if ref.kind in BACKEND_KINDS and weight_of(ref) != 0
        ]
        if not split:
            return None

        def rewrite(listener: listener_pb2.Listener, name: ClusterNamer) -> None:
            proxy = _tcp_proxy(service, split, name)
            for chain in listener.filter_chains:
                settle(chain)  # the filters are replaced: nothing may stay decoded
                del chain.filters[:]
                added = chain.filters.add(name="envoy.filters.network.tcp_proxy")
                added.typed_config.type_url = TCP_PROXY_TYPE
                added.typed_config.value = proxy.SerializeToString(deterministic=True)

        return OutboundPlan(tuple(dict.fromkeys(b for b, _ in split)), (), rewrite)


PLUGIN = register_plugin(MeshTCPRoutePlugin())

"""MeshTrafficPermission (Kuma ``pkg/plugins/policies/meshtrafficpermission``): which clients
may reach a proxy's inbounds, by their mTLS identity.

Schema: a top-level targetRef (Mesh, MeshSubset, MeshService, MeshServiceSubset) and ``from``
items whose targetRef (same kinds) names the clients and whose ``default.action`` is Allow,
Deny or AllowWithShadowDeny. Kuma's rules: ``from`` needs at least one item, each ``action``
must be defined.

Envoy change (Kuma's plugin and RBAC configurer): only with mesh mTLS on, only on the inbound
chains that terminate Kuma's mTLS. Generation already puts a deny-all RBAC there (mTLS on and
no permission: deny, Kuma's rule); this plugin replaces it, per inbound the policies select,
with the inbound's ``from`` rules: Allow and AllowWithShadowDeny subsets become the allowed
principals, AllowWithShadowDeny also shadow-denied, Deny subsets are absent
(``kuma.xds.generate.rbac``). An inbound no permission selects keeps the deny-all RBAC.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import msgspec
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from kuma.resources.errors import Violation
from kuma.resources.model import (
    MESH,
    MESH_SERVICE,
    MESH_SERVICE_SUBSET,
    MESH_SUBSET,
    Policy,
    PolicyConf,
    PolicySpec,
)
from kuma.resources.policy import PolicyKind, register

if TYPE_CHECKING:
    from kuma.xds.generate.rbac import PermissionRule

from .matching import InboundKey, KindPolicies
from .plugin import UNSELECTED, PolicyPlugin, register_plugin

Action = Literal["Allow", "Deny", "AllowWithShadowDeny"]
KINDS = (MESH, MESH_SUBSET, MESH_SERVICE, MESH_SERVICE_SUBSET)


class Conf(PolicyConf, frozen=True):
    action: Action | None = None


class MeshTrafficPermission(Policy, tag="MeshTrafficPermission", frozen=True):
    spec: PolicySpec[Conf] = msgspec.field(default_factory=PolicySpec)
    TYPE: ClassVar[str] = "MeshTrafficPermission"


def _validate_lists(spec: PolicySpec[Any], out: list[Violation]) -> None:
    if not spec.from_:
        out.append(Violation("spec.from", "needs at least one item"))


def _validate_conf(conf: Conf | None, path: str, top: str, out: list[Violation]) -> None:
    if conf is None or conf.action is None:
        out.append(Violation(f"{path}.action", "must be defined"))


KIND = register(
    PolicyKind(
        name="MeshTrafficPermission",
        cls=MeshTrafficPermission,
        plural="meshtrafficpermissions",
        conf_type=Conf,
        top_kinds=KINDS,
        from_kinds=KINDS,
        validate_conf=_validate_conf,
        validate_lists=_validate_lists,
        order=9,
    )
)


def permission_rules(policies: KindPolicies, inbound: InboundKey) -> list[PermissionRule] | None:
    """The inbound's rules as RBAC input, in rule order; None when no permission selects the
    inbound (it stays denied)."""
    # kuma.xds.generate imports kuma.policies: import it when used, not when registered.
    from kuma.xds.generate.rbac import PermissionRule, TagMatch

    rules = policies.from_rules.get(inbound)
    if rules is None:
        return None
    result: list[PermissionRule] = []
    for rule in rules:
        action = rule.conf.get("action")
        if action not in ("Allow", "Deny", "AllowWithShadowDeny"):
            continue
        subset = tuple(TagMatch(t.key, t.value, t.negated) for t in rule.subset)
        result.append(PermissionRule(subset, action))
    return result


def mesh_of(listener: listener_pb2.Listener) -> str | None:
    """The mesh whose mTLS the listener terminates, read from its identity Secret's name."""
    from kuma.xds.generate.rbac import is_kuma_tls

    for chain in listener.filter_chains:
        if is_kuma_tls(chain):
            context = tls_pb2.DownstreamTlsContext()
            chain.transport_socket.typed_config.Unpack(context)
            configs = context.common_tls_context.tls_certificate_sds_secret_configs
            if configs:
                return str(configs[0].name).rpartition(":")[2]
    return None


class MeshTrafficPermissionPlugin(PolicyPlugin):
    kind = KIND

    def inbound_input(self, policies: KindPolicies, inbound: InboundKey) -> Hashable:
        """What :meth:`inbound_listener` reads: the inbound's rules (and the listener's own
        mTLS). Equal rules are one shared tuple, kept in the inbound memo of every proxy (an
        allow-all selects them all), and a new version of a permission that changes no rule
        keeps the proxies' inbound listeners."""
        rules = permission_rules(policies, inbound)
        if rules is None:
            return UNSELECTED
        key = tuple(rules)
        shared = _RULES.get(key)
        if shared is None:
            if len(_RULES) > 1024:  # bounded: rule sets of permissions long gone
                _RULES.clear()
            shared = _RULES[key] = key
        return shared

    def inbound_listener(
        self,
        listener: listener_pb2.Listener,
        policies: KindPolicies,
        inbound: InboundKey,
        protocol: str,
    ) -> None:
        mesh = mesh_of(listener)
        if mesh is None:
            return  # mTLS off: Kuma applies no permission
        rules = permission_rules(policies, inbound)
        if rules is None:
            return
        from kuma.xds.generate.rbac import apply_rbac, is_kuma_tls

        for chain in listener.filter_chains:
            if is_kuma_tls(chain):
                apply_rbac(chain, listener.name, mesh, rules)


#: Rule tuples shared by the proxies' inbound keys.
_RULES: dict[tuple[Hashable, ...], tuple[Hashable, ...]] = {}

PLUGIN = register_plugin(MeshTrafficPermissionPlugin())

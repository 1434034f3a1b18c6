"""Envoy RBAC for MeshTrafficPermission, as Kuma v2.7 builds it
(pkg/plugins/policies/meshtrafficpermission/xds/rbac_configurer.go).

Input: the rules that apply to one inbound, each a subset of callers (tag matches) and an
action. Output, on a Kuma-mTLS filter chain: an ``envoy.filters.http.rbac`` filter first in the
HTTP connection manager, or else an ``envoy.filters.network.rbac`` filter first in the chain
(stat prefix ``<listener>.``). ``rules``: ALLOW with one policy ``MeshTrafficPermission``
(any permission) whose principals are the Allow and AllowWithShadowDeny subsets; Deny
subsets are simply absent, so no principal at all denies everything. ``shadow_rules``: DENY
over the AllowWithShadowDeny subsets (logged, not enforced).

Principals are the caller's certificate SANs: ``spiffe://<mesh>/<service>`` for
``kuma.io/service``, ``kuma://<tag>/<value>`` otherwise; several tags are ``and_ids``, a
negated tag ``not_id``, an empty subset (``Mesh``) ``any``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

from envoy.config.listener.v3 import listener_components_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2

from kuma.policies.decoded import settle
from kuma.resources.model import SERVICE_TAG

from ._pb import HCM_FILTER, pack
from .names import sanitize_metric
from .tls import TLS_TRANSPORT_SOCKET

NETWORK_RBAC = "envoy.filters.network.rbac"
HTTP_RBAC = "envoy.filters.http.rbac"
POLICY_NAME = "MeshTrafficPermission"

Action = Literal["Allow", "Deny", "AllowWithShadowDeny"]


class TagMatch(NamedTuple):
    key: str
    value: str
    negated: bool = False


class PermissionRule(NamedTuple):
    """Callers matching every tag of ``subset`` (empty: every caller) get ``action``."""

    subset: tuple[TagMatch, ...]
    action: Action


#: Kuma's rule with mTLS on and no permission: deny every caller.
DENY_ALL: tuple[PermissionRule, ...] = (PermissionRule((), "Deny"),)


def _principal(mesh: str, subset: Sequence[TagMatch]) -> rbac_pb2.Principal:
    ids: list[rbac_pb2.Principal] = []
    for match in subset:
        principal = rbac_pb2.Principal()
        name = principal.authenticated.principal_name
        if match.key == SERVICE_TAG:
            name.exact = f"spiffe://{mesh}/{match.value}"
        else:
            name.exact = f"kuma://{match.key}/{match.value}"
        if match.negated:
            principal = rbac_pb2.Principal(not_id=principal)
        ids.append(principal)
    if not ids:
        return rbac_pb2.Principal(any=True)
    if len(ids) == 1:
        return ids[0]
    result = rbac_pb2.Principal()
    result.and_ids.ids.extend(ids)
    return result


def _policy(principals: list[rbac_pb2.Principal]) -> rbac_pb2.Policy:
    policy = rbac_pb2.Policy(principals=principals)
    policy.permissions.add(any=True)
    return policy


def rbac_rules(
    mesh: str, rules: Sequence[PermissionRule]
) -> tuple[rbac_pb2.RBAC, rbac_pb2.RBAC | None]:
    """(rules, shadow rules or None) for ``rules`` in order."""
    by_action: dict[str, list[rbac_pb2.Principal]] = {}
    for rule in rules:
        by_action.setdefault(rule.action, []).append(_principal(mesh, rule.subset))
    enforced = rbac_pb2.RBAC(action=rbac_pb2.RBAC.ALLOW)
    allowed = by_action.get("Allow", []) + by_action.get("AllowWithShadowDeny", [])
    if allowed:
        enforced.policies[POLICY_NAME].CopyFrom(_policy(allowed))
    shadow_denied = by_action.get("AllowWithShadowDeny", [])
    if not shadow_denied:
        return enforced, None
    shadow = rbac_pb2.RBAC(action=rbac_pb2.RBAC.DENY)
    shadow.policies[POLICY_NAME].CopyFrom(_policy(shadow_denied))
    return enforced, shadow


def is_kuma_tls(chain: listener_components_pb2.FilterChain) -> bool:
    """Whether the chain terminates Kuma's mTLS (where permissions apply)."""
    return bool(chain.transport_socket.name == TLS_TRANSPORT_SOCKET)


def apply_rbac(
    chain: listener_components_pb2.FilterChain,
    listener_name: str,
    mesh: str,
    rules: Sequence[PermissionRule],
) -> None:
    """Put the RBAC filter for ``rules`` first in ``chain`` (inside its HTTP connection
    manager when it has one), replacing any RBAC filter the chain had (Kuma: a newer
    permission takes the chain over)."""
    # Reads and reorders the chain's filters as bytes: a policy plugin's edits still held
    # decoded (MeshTrafficPermission runs among the plugins) are packed first.
    settle(chain)
    enforced, shadow = rbac_rules(mesh, rules)
    kept = [f for f in chain.filters if f.name != NETWORK_RBAC]
    if len(kept) != len(chain.filters):
        del chain.filters[:]
        chain.filters.extend(kept)
    for filter_ in chain.filters:
        if filter_.name == HCM_FILTER:
            config = hcm_pb2.HttpConnectionManager()
            filter_.typed_config.Unpack(config)
            http = http_rbac_pb2.RBAC(rules=enforced)
            if shadow is not None:
                http.shadow_rules.CopyFrom(shadow)
            filters = [f for f in config.http_filters if f.name != HTTP_RBAC]
            del config.http_filters[:]
            config.http_filters.add(name=HTTP_RBAC).typed_config.CopyFrom(pack(http))
            config.http_filters.extend(filters)
            filter_.typed_config.CopyFrom(pack(config))
            return
    network = network_rbac_pb2.RBAC(
        rules=enforced, stat_prefix=sanitize_metric(listener_name) + "."
    )
    if shadow is not None:
        network.shadow_rules.CopyFrom(shadow)
    filters = list(chain.filters)
    del chain.filters[:]
    chain.filters.add(name=NETWORK_RBAC).typed_config.CopyFrom(pack(network))
    chain.filters.extend(filters)

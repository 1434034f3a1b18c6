"""MeshTrafficPermission on generated listeners: Kuma's RBAC from the inbound's from-rules,
only with mTLS on, only on the Kuma-mTLS chains; deny when nothing selects the inbound."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format  # type: ignore[import-untyped, unused-ignore]

from kuma.policies import resolve
from kuma.resources import Dataplane, Mesh, from_document
from kuma.xds.generate import StaticMeshView, generate_proxy, types


def plain(message: Any) -> Any:
    return json.loads(json_format.MessageToJson(message))


def mesh(mode: str | None) -> Mesh:
    if mode is None:
        return Mesh(name="default")
    backend = {"name": "ca-1", "type": "builtin", "mode": mode}
    return Mesh(name="default", mtls={"enabledBackend": "ca-1", "backends": [backend]})


BACKEND = from_document(
    {
        "type": "Dataplane",
        "mesh": "default",
        "name": "backend-1",
        "networking": {
            "address": "10.0.0.2",
            "inbound": [
                {"port": 80, "tags": {"kuma.io/service": "backend", "kuma.io/protocol": "http"}},
                {"port": 81, "tags": {"kuma.io/service": "backend-tcp", "version": "v1"}},
            ],
        },
    }
)


def permission(name: str, spec: dict[str, Any]) -> Any:
    return from_document(
        {"type": "MeshTrafficPermission", "mesh": "default", "name": name, "spec": spec}
    )


def listeners(mode: str | None, *permissions: Any) -> dict[str, Any]:
    assert isinstance(BACKEND, Dataplane)
    policies = resolve(BACKEND, {"MeshTrafficPermission": list(permissions)})
    view = StaticMeshView([BACKEND], mesh=mesh(mode))
    generated = generate_proxy(BACKEND, view, 9901, policies=policies)
    return {name: plain(listener) for name, listener in generated[types.LISTENER].items()}


def http_rbac(listener: dict[str, Any], chain: int = 0) -> dict[str, Any]:
    manager = listener["filterChains"][chain]["filters"][0]["typedConfig"]
    first = manager["httpFilters"][0]
    assert first["name"] == "envoy.filters.http.rbac"
    assert [f["name"] for f in manager["httpFilters"]].count("envoy.filters.http.rbac") == 1
    result: dict[str, Any] = first["typedConfig"]
    return result


def network_rbac(listener: dict[str, Any], chain: int = 0) -> dict[str, Any]:
    filters = listener["filterChains"][chain]["filters"]
    assert filters[0]["name"] == "envoy.filters.network.rbac"
    assert [f["name"] for f in filters].count("envoy.filters.network.rbac") == 1
    result: dict[str, Any] = filters[0]["typedConfig"]
    return result


ALLOW_WEB_DENY_OPS = permission(
    "backend",
    {
        "targetRef": {"kind": "MeshService", "name": "backend"},
        "from": [
            {"targetRef": {"kind": "MeshService", "name": "web"}, "default": {"action": "Allow"}},
            {"targetRef": {"kind": "MeshService", "name": "ops"}, "default": {"action": "Deny"}},
            {
                "targetRef": {"kind": "MeshSubset", "tags": {"team": "audit"}},
                "default": {"action": "AllowWithShadowDeny"},
            },
        ],
    },
)


def matches(principal: dict[str, Any], sans: set[str]) -> bool:
    """Envoy's principal semantics over a caller's URI SANs."""
    if principal.get("any"):
        return True
    if "authenticated" in principal:
        return principal["authenticated"]["principalName"]["exact"] in sans
    if "andIds" in principal:
        return all(matches(p, sans) for p in principal["andIds"]["ids"])
    if "notId" in principal:
        return not matches(principal["notId"], sans)
    raise AssertionError(principal)


def caller(service: str, **tags: str) -> set[str]:
    sans = {f"spiffe://default/{service}", f"kuma://kuma.io/service/{service}"}
    return sans | {f"kuma://{k}/{v}" for k, v in tags.items()}


def decide(rbac: dict[str, Any], sans: set[str]) -> tuple[bool, bool]:
    """(allowed, shadow-denied) for a caller."""
    policy = rbac["rules"].get("policies", {}).get("MeshTrafficPermission")
    allowed = policy is not None and any(matches(p, sans) for p in policy["principals"])
    shadow = rbac.get("shadowRules", {}).get("policies", {}).get("MeshTrafficPermission")
    denied = shadow is not None and any(matches(p, sans) for p in shadow["principals"])
    return allowed, denied


def test_permission_becomes_kumas_rbac() -> None:
    found = listeners("STRICT", ALLOW_WEB_DENY_OPS)
    rbac = http_rbac(found["inbound:10.0.0.2:80"])
    assert rbac["shadowRules"]["action"] == "DENY"
    # Later items win (Kuma's merge): web allowed, ops denied, audit allowed and shadow-denied,
    # anyone else denied (no rule covers them).
    assert decide(rbac, caller("web")) == (True, False)
    assert decide(rbac, caller("ops")) == (False, False)
    assert decide(rbac, caller("reports", team="audit")) == (True, True)
    assert decide(rbac, caller("web", team="audit")) == (True, True)
    assert decide(rbac, caller("other")) == (False, False)
    # The TCP inbound is not selected by the permission: it stays denied (network RBAC).
    tcp = network_rbac(found["inbound:10.0.0.2:81"])
    assert tcp["rules"] == {}
    assert tcp["statPrefix"] == "inbound_10_0_0_2_81."


def test_allow_all_and_mtls_off() -> None:
    allow_all = permission(
        "allow-all",
        {
            "targetRef": {"kind": "Mesh"},
            "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}],
        },
    )
    found = listeners("STRICT", allow_all)
    assert http_rbac(found["inbound:10.0.0.2:80"])["rules"]["policies"]["MeshTrafficPermission"][
        "principals"
    ] == [{"any": True}]
    tcp = network_rbac(found["inbound:10.0.0.2:81"])
    assert tcp["rules"]["policies"]["MeshTrafficPermission"]["principals"] == [{"any": True}]
    # Without mTLS Kuma applies no permission at all.
    plain_listeners = listeners(None, allow_all)
    assert "rbac" not in json.dumps(plain_listeners)


def test_permissive_guards_only_the_kuma_chain() -> None:
    found = listeners("PERMISSIVE", ALLOW_WEB_DENY_OPS)
    listener = found["inbound:10.0.0.2:80"]
    assert len(listener["filterChains"]) == 3
    # raw_buffer and application TLS chains: no RBAC; the Kuma-mTLS chain (ALPN kuma): RBAC.
    for chain in (0, 1):
        assert "rbac" not in json.dumps(listener["filterChains"][chain])
    assert listener["filterChains"][2]["filterChainMatch"]["applicationProtocols"] == ["kuma"]
    http_rbac(listener, chain=2)


def test_deny_all_without_permission() -> None:
    found = listeners("STRICT")
    assert http_rbac(found["inbound:10.0.0.2:80"])["rules"] == {}
    assert network_rbac(found["inbound:10.0.0.2:81"])["rules"] == {}


def test_inbound_key_is_the_rules_shared_by_every_proxy() -> None:
    """The engine keeps a proxy's inbound listener under its policies' inbound keys: for
    MeshTrafficPermission that is the inbound's rules, one shared object for every proxy an
    allow-all selects, equal across a new version that changes no rule, and different when a
    rule changes."""
    from kuma.policies.meshtrafficpermission import PLUGIN
    from kuma.policies.plugin import UNSELECTED

    assert isinstance(BACKEND, Dataplane)
    other = from_document(
        {
            "type": "Dataplane",
            "mesh": "default",
            "name": "backend-2",
            "networking": {
                "address": "10.0.0.3",
                "inbound": [{"port": 80, "tags": {"kuma.io/service": "backend"}}],
            },
        }
    )
    assert isinstance(other, Dataplane)
    allow = {
        "targetRef": {"kind": "Mesh"},
        "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}],
    }
    deny = {
        "targetRef": {"kind": "Mesh"},
        "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Deny"}}],
    }

    def key(dataplane: Dataplane, inbound: tuple[str, int], *permissions: Any) -> Any:
        matched = resolve(dataplane, {"MeshTrafficPermission": list(permissions)})
        kind = matched.get("MeshTrafficPermission")
        assert kind is not None
        return PLUGIN.inbound_input(kind, inbound)

    first = key(BACKEND, ("10.0.0.2", 80), permission("allow-all", allow))
    assert key(other, ("10.0.0.3", 80), permission("allow-all", allow)) is first
    assert key(BACKEND, ("10.0.0.2", 80), permission("allow-all-v2", allow)) == first
    assert key(BACKEND, ("10.0.0.2", 80), permission("deny-all", deny)) != first
    # A permission of the proxy's other inbound only: this one has no rules.
    tcp_only = {**allow, "targetRef": {"kind": "MeshService", "name": "backend-tcp"}}
    assert key(BACKEND, ("10.0.0.2", 81), permission("tcp", tcp_only)) == first
    assert key(BACKEND, ("10.0.0.2", 80), permission("tcp", tcp_only)) == UNSELECTED

"""What Kuma's ``GET /meshes/{mesh}/dataplanes/{name}/_rules`` answers: for each policy kind
that selects the proxy, its ``to`` rules and its ``from`` rules per inbound (a builtin
gateway: per listener port), each with the merged configuration, the subset it applies to and
the policies it came from."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kuma.resources.model import Dataplane, MeshGateway, Policy

from .matching import KindPolicies, resolve
from .plugin import PLUGINS
from .rules import Rule, Rules


def _rule(rule: Rule, kind: str, mesh: str) -> dict[str, Any]:
    return {
        "conf": dict(rule.conf),
        "matchers": [{"key": t.key, "not": t.negated, "value": t.value} for t in rule.subset],
        "origin": [{"mesh": mesh, "name": name, "type": kind} for name in rule.origins],
    }


def _rules(rules: Rules, kind: str, mesh: str) -> list[dict[str, Any]]:
    return [_rule(rule, kind, mesh) for rule in rules]


def _kind(matched: KindPolicies, dataplane: Dataplane) -> dict[str, Any]:
    kind = matched.kind.name
    mesh = dataplane.mesh
    from_rules = []
    networking = dataplane.networking
    gateway = networking.gateway if networking is not None else None
    if matched.listener_to_rules is not None and gateway is not None:
        # A builtin gateway: per listener port, its tags the gateway's (Kuma: a listener
        # without rules, e.g. a policy without ``from``, is left out).
        for port_key in sorted(matched.from_rules, key=lambda key: key[1]):
            listener_rules = matched.from_rules[port_key]
            if listener_rules and matched.kind.from_kinds:
                from_rules.append(
                    {
                        "inbound": {"port": port_key[1], "tags": dict(gateway.tags)},
                        "rules": _rules(listener_rules, kind, mesh),
                    }
                )
    for inbound in networking.inbound if networking is not None else ():
        key = (inbound.effective_address(networking), inbound.port)  # type: ignore[arg-type]
        rules = matched.from_rules.get(key)
        if rules is None or not matched.kind.from_kinds:
            continue
        from_rules.append(
            {
                "inbound": {"port": inbound.port, "tags": dict(inbound.tags)},
                "rules": _rules(rules, kind, mesh),
            }
        )
    return {
        "fromRules": from_rules,
        "toRules": _rules(matched.to_rules, kind, mesh),
        "type": kind,
        "warnings": [],
    }


def rules_document(
    dataplane: Dataplane,
    policies_by_kind: Mapping[str, Sequence[Policy]],
    gateway: MeshGateway | None = None,
    resource: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """``gateway``: the MeshGateway a builtin gateway Dataplane serves (its listeners are what
    the policies select); ``resource``: the (type, name) the document is for (default: the
    Dataplane; Kuma's MeshGateway ``_rules`` answers for a Dataplane its selector matches)."""
    type_name, name = resource or ("Dataplane", dataplane.name)
    matched = resolve(dataplane, policies_by_kind, gateway=gateway)
    rules = []
    for plugin in PLUGINS:  # Kuma's plugin order
        found = matched.get(plugin.kind.name)
        if found is not None:
            rules.append(_kind(found, dataplane))
    return {
        "httpMatches": [],
        "resource": {"mesh": dataplane.mesh, "name": name, "type": type_name},
        "rules": rules,
    }

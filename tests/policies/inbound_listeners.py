"""The proxy of Kuma's inbound-policy plugin tests (``test``: inbound 17777 http service
``backend``, 17778 tcp service ``frontend``) and the listeners generated for it under some
policies, as proto3 JSON, for comparison with Kuma's golden files."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format  # type: ignore[import-untyped, unused-ignore]

from kuma.policies import resolve
from kuma.resources import Dataplane, from_document, validate
from kuma.resources.model import Policy
from kuma.xds.generate import StaticMeshView, generate_proxy, types

HTTP_INBOUND = "inbound:127.0.0.1:17777"
TCP_INBOUND = "inbound:127.0.0.1:17778"
#: Kuma's rule: from-policies (no gateways) on every sidecar.
SIDECARS = {"kind": "Mesh", "proxyTypes": ["Sidecar"]}


def kuma_dataplane() -> Dataplane:
    http = {"kuma.io/service": "backend", "kuma.io/protocol": "http"}
    inbound = [
        {"port": 17777, "servicePort": 8080, "tags": http},
        {"port": 17778, "servicePort": 8081, "tags": {"kuma.io/service": "frontend"}},
    ]
    resource = from_document(
        {
            "type": "Dataplane",
            "mesh": "default",
            "name": "test",
            "networking": {"address": "127.0.0.1", "inbound": inbound},
        }
    )
    assert isinstance(resource, Dataplane)
    return resource


def valid_policy(kind: str, spec: dict[str, Any]) -> Policy:
    policy = from_document({"type": kind, "mesh": "default", "name": kind.lower(), "spec": spec})
    assert isinstance(policy, Policy)
    assert validate(policy) == []
    return policy


def inbound_listeners(*policies: Policy) -> dict[str, Any]:
    """Every listener of Kuma's test proxy under ``policies``, by name, as JSON."""
    dataplane = kuma_dataplane()
    by_kind: dict[str, list[Policy]] = {}
    for policy in policies:
        by_kind.setdefault(policy.TYPE, []).append(policy)
    matched = resolve(dataplane, by_kind)
    generated = generate_proxy(dataplane, StaticMeshView([dataplane]), 9901, policies=matched)
    return {
        name: json.loads(json_format.MessageToJson(listener))
        for name, listener in generated[types.LISTENER].items()
    }

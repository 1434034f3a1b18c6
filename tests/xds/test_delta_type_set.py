"""The delta state machine with another protocol's type set (the seam KDS will use to carry
Kuma resources between control planes with the same code that serves Envoy)."""

from __future__ import annotations

import pytest
from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryRequest

from kuma.xds.generate.types import CLUSTER
from kuma.xds.server import InvalidRequest
from kuma.xds.server.delta import ENVOY_TYPES, DeltaProtocol, TypeSet
from kuma.xds.snapshot import VersionedResource, content_version

MESH, TIMEOUT = "Mesh", "MeshTimeout"
KUMA_TYPES = TypeSet((MESH, TIMEOUT))


def kuma_resource(type_url: str, name: str, body: bytes) -> VersionedResource:
    return VersionedResource(type_url, name, content_version(body), body)


def sent(responses: list[object]) -> list[tuple[str, list[str], list[str]]]:
    return [
        (r.type_url, [x.name for x in r.resources], list(r.removed_resources))  # type: ignore[attr-defined]
        for r in responses
    ]


def test_envoy_types_are_the_default() -> None:
    assert ENVOY_TYPES.known == frozenset(ENVOY_TYPES.send_order)
    # Built once and shared by every stream, not a set of its own per stream.
    assert ENVOY_TYPES.known is ENVOY_TYPES.known
    assert CLUSTER in ENVOY_TYPES.legacy_wildcard
    with pytest.raises(InvalidRequest, match="unknown type_url 'Mesh'"):
        DeltaProtocol().handle_request(DeltaDiscoveryRequest(type_url=MESH))


def test_kuma_types_in_their_order_and_only_differences_after_a_reconnect() -> None:
    state = {
        MESH: {"default": kuma_resource(MESH, "default", b"mesh-1")},
        TIMEOUT: {
            "t1": kuma_resource(TIMEOUT, "t1", b"timeout-1"),
            "t2": kuma_resource(TIMEOUT, "t2", b"timeout-2"),
        },
    }
    stream = DeltaProtocol(KUMA_TYPES)
    with pytest.raises(InvalidRequest, match="unknown type_url"):
        stream.handle_request(DeltaDiscoveryRequest(type_url=CLUSTER))
    # Subscribed policies first: the send order, not the request order, decides.
    for type_url in (TIMEOUT, MESH):
        stream.handle_request(
            DeltaDiscoveryRequest(type_url=type_url, resource_names_subscribe=["*"])
        )
    assert sent(stream.build_responses(state.__getitem__)) == [
        (MESH, ["default"], []),
        (TIMEOUT, ["t1", "t2"], []),
    ]
    # A removal and an addition: added first (Mesh), removed in reverse order.
    state[TIMEOUT] = {"t1": state[TIMEOUT]["t1"]}
    state[MESH]["demo"] = kuma_resource(MESH, "demo", b"mesh-2")
    stream.resources_changed({TIMEOUT: {"t2"}, MESH: {"demo"}})
    assert sent(stream.build_responses(state.__getitem__)) == [
        (MESH, ["demo"], []),
        (TIMEOUT, [], ["t2"]),
    ]

    # A reconnect declaring what the zone holds: only what differs travels.
    held = {name: r.version for name, r in state[TIMEOUT].items()}
    state[TIMEOUT]["t3"] = kuma_resource(TIMEOUT, "t3", b"timeout-3")
    again = DeltaProtocol(KUMA_TYPES)
    again.handle_request(
        DeltaDiscoveryRequest(
            type_url=TIMEOUT, resource_names_subscribe=["*"], initial_resource_versions=held
        )
    )
    assert sent(again.build_responses(state.__getitem__)) == [(TIMEOUT, ["t3"], [])]


def test_no_legacy_wildcard_unless_the_type_set_says_so() -> None:
    state = {MESH: {"default": kuma_resource(MESH, "default", b"m")}, TIMEOUT: {}}
    stream = DeltaProtocol(KUMA_TYPES)
    stream.handle_request(DeltaDiscoveryRequest(type_url=MESH))
    assert sent(stream.build_responses(state.__getitem__)) == []
    legacy = DeltaProtocol(TypeSet((MESH, TIMEOUT), frozenset({MESH})))
    legacy.handle_request(DeltaDiscoveryRequest(type_url=MESH))
    assert sent(legacy.build_responses(state.__getitem__)) == [(MESH, ["default"], [])]

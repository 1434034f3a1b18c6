"""The engine and the callers' tags: a policy that turns on a mesh's need of ``x-kuma-tags``
re-assembles every proxy of the mesh (not only those it selects), each outbound listener then
carries its own proxy's tags (proxies with the same tags still share one), and turning the
need off restores one listener for all."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from kuma.resources import ResourceMeta, from_document
from kuma.store import Operation, ResourceEvent
from kuma.xds import types
from kuma.xds.engine import Engine
from kuma.xds.engine.watches import Subscription

from .test_engine import dataplane

_META = ResourceMeta("1", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
LISTENER = "outbound:127.0.0.1:20000"
WEB_TAGS = "&kuma.io/protocol=http&&kuma.io/service=web&"
API_TAGS = "&kuma.io/protocol=http&&kuma.io/service=api&"


def fault_injection(client: dict[str, Any]) -> Any:
    return from_document(
        {
            "type": "MeshFaultInjection",
            "mesh": "default",
            "name": "faults",
            "spec": {
                "targetRef": {"kind": "MeshService", "name": "backend"},
                "from": [
                    {
                        "targetRef": client,
                        "default": {"http": [{"abort": {"httpStatus": 418, "percentage": 50}}]},
                    }
                ],
            },
        }
    )


def event(resource: Any, operation: Operation = Operation.UPDATE) -> ResourceEvent:
    return ResourceEvent(operation, resource, _META, 1)


def header(watch: Subscription) -> list[tuple[str, str]]:
    listener = listener_pb2.Listener.FromString(watch.resources(types.LISTENER)[LISTENER].body)
    manager = hcm_pb2.HttpConnectionManager.FromString(
        listener.filter_chains[0].filters[0].typed_config.value
    )
    return [(h.header.key, h.header.value) for h in manager.route_config.request_headers_to_add]


def test_the_need_turns_on_and_off_for_the_whole_mesh() -> None:
    engine = Engine()
    engine.apply_now(
        [
            event(dataplane("b-1", "backend", address="10.0.0.9")),
            event(dataplane("web-1", "web", address="10.0.0.1", outbounds=("backend",))),
            event(dataplane("web-2", "web", address="10.0.0.2", outbounds=("backend",))),
            event(dataplane("api-1", "api", address="10.0.0.3", outbounds=("backend",))),
        ]
    )
    watches = {n: engine.subscribe(f"default.{n}") for n in ("web-1", "web-2", "api-1")}
    for watch in watches.values():
        watch.take_changes()

    def listener(name: str) -> Any:
        return watches[name].resources(types.LISTENER)[LISTENER]

    assert listener("web-1") is listener("api-1")
    assert header(watches["web-1"]) == []

    # The policy selects backend only, yet the callers are re-assembled with their own tags.
    engine.apply_now([event(fault_injection({"kind": "MeshService", "name": "web"}))])
    for watch in watches.values():
        assert types.LISTENER in watch.take_changes()
    assert header(watches["web-1"]) == [("x-kuma-tags", WEB_TAGS)]
    assert header(watches["web-2"]) == [("x-kuma-tags", WEB_TAGS)]
    assert header(watches["api-1"]) == [("x-kuma-tags", API_TAGS)]
    assert listener("web-1") is listener("web-2")
    assert listener("web-1") is not listener("api-1")

    # A Mesh-wide rule needs no tags: the header goes, one listener serves everybody again.
    engine.apply_now([event(fault_injection({"kind": "Mesh"}))])
    for watch in watches.values():
        assert types.LISTENER in watch.take_changes()
    assert header(watches["api-1"]) == []
    assert listener("web-1") is listener("api-1")

    # Named clients again, then the policy deleted: the same on and off.
    named = fault_injection({"kind": "MeshSubset", "tags": {"kuma.io/service": "api"}})
    engine.apply_now([event(named)])
    assert header(watches["web-2"]) == [("x-kuma-tags", WEB_TAGS)]
    engine.apply_now([event(named, Operation.DELETE)])
    for watch in watches.values():
        watch.take_changes()
    assert header(watches["web-2"]) == header(watches["api-1"]) == []
    assert listener("web-2") is listener("api-1")


def test_a_proxy_whose_tags_change_gets_its_new_tags() -> None:
    engine = Engine()
    engine.apply_now(
        [
            event(dataplane("b-1", "backend", address="10.0.0.9")),
            event(dataplane("web-1", "web", address="10.0.0.1", outbounds=("backend",))),
            event(fault_injection({"kind": "MeshService", "name": "web"})),
        ]
    )
    watch = engine.subscribe("default.web-1")
    assert header(watch) == [("x-kuma-tags", WEB_TAGS)]
    engine.apply_now([event(dataplane("web-1", "api", address="10.0.0.1", outbounds=("backend",)))])
    assert header(watch) == [("x-kuma-tags", API_TAGS)]

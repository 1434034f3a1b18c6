"""Targeted engine behaviour: work follows what changed, and only affected proxies hear of it."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import pytest

from kuma.resources import Dataplane, ResourceMeta, from_document
from kuma.store import Operation, ResourceEvent, open_store
from kuma.xds.engine import Engine, parse_node_id
from kuma.xds.engine.watches import Subscription
from kuma.xds.generate import types

_META = ResourceMeta("1", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))


def dataplane(
    name: str,
    service: str,
    *,
    address: str = "10.0.0.1",
    outbounds: tuple[str, ...] = (),
    ready: bool = True,
    protocol: str = "http",
) -> Dataplane:
    resource = from_document(
        {
            "type": "Dataplane",
            "mesh": "default",
            "name": name,
            "networking": {
                "address": address,
                "inbound": [
                    {
                        "port": 10000,
                        "servicePort": 8000,
                        "health": {"ready": ready},
                        "tags": {"kuma.io/service": service, "kuma.io/protocol": protocol},
                    }
                ],
                "outbound": [
                    {"port": 20000 + i, "tags": {"kuma.io/service": s}}
                    for i, s in enumerate(outbounds)
                ],
            },
        }
    )
    assert isinstance(resource, Dataplane)
    return resource


def put(*dataplanes: Dataplane) -> list[ResourceEvent]:
    return [ResourceEvent(Operation.CREATE, d, _META, 1) for d in dataplanes]


def test_parse_node_id() -> None:
    assert parse_node_id("default.web-01") == ("default", "web-01")
    assert parse_node_id("default.web.01") == ("default", "web.01")
    for bad in ("default", ".web", "default.", ""):
        with pytest.raises(ValueError, match="node id"):
            parse_node_id(bad)


def test_an_endpoint_change_reaches_only_the_consumers() -> None:
    engine = Engine()
    engine.apply_now(
        put(
            dataplane("backend-1", "backend"),
            dataplane("web-1", "web", outbounds=("backend",)),
            dataplane("web-2", "web", outbounds=("backend",)),
            dataplane("other-1", "other", outbounds=("web",)),
        )
    )
    subs = {n: engine.subscribe(f"default.{n}") for n in ("web-1", "web-2", "other-1")}
    for sub in subs.values():
        assert sub.known
        sub.take_changes()
    before = subs["web-1"].resources(types.ENDPOINT)["backend"]

    stats = engine.apply_now(put(dataplane("backend-2", "backend", address="10.0.0.2")))

    assert stats.proxies_assembled == 0  # a shared CLA patch, no proxy re-generated
    assert stats.proxies_notified == 2
    for name in ("web-1", "web-2"):
        assert subs[name].take_changes() == {types.ENDPOINT: {"backend"}}
    assert subs["other-1"].take_changes() == {}
    after = subs["web-1"].resources(types.ENDPOINT)["backend"]
    assert after.version != before.version
    # Built and serialized once, shared by both consumers.
    assert subs["web-2"].resources(types.ENDPOINT)["backend"] is after


def test_a_dataplane_change_re_generates_only_that_proxy() -> None:
    engine = Engine()
    engine.apply_now(
        put(dataplane("web-1", "web"), dataplane("web-2", "web"), dataplane("api-1", "api"))
    )
    subs = {n: engine.subscribe(f"default.{n}") for n in ("web-1", "web-2", "api-1")}
    for sub in subs.values():
        sub.take_changes()
    stats = engine.apply_now(put(dataplane("web-1", "web", outbounds=("api",))))
    assert stats.proxies_assembled == 1
    changes = subs["web-1"].take_changes()
    assert changes[types.CLUSTER] == {"api"}
    assert changes[types.ENDPOINT] == {"api"}
    assert changes[types.LISTENER] == {"outbound:127.0.0.1:20000"}
    assert subs["web-2"].take_changes() == {}
    assert subs["api-1"].take_changes() == {}


def test_an_unchanged_write_does_nothing() -> None:
    engine = Engine()
    engine.apply_now(put(dataplane("web-1", "web", outbounds=("web",))))
    sub = engine.subscribe("default.web-1")
    sub.take_changes()
    stats = engine.apply_now(put(dataplane("web-1", "web", outbounds=("web",))))
    assert stats.proxies_assembled == 0
    assert stats.proxies_notified == 0
    assert sub.take_changes() == {}


def test_health_flip_removes_and_restores_the_endpoint() -> None:
    engine = Engine()
    engine.apply_now(
        put(
            dataplane("backend-1", "backend"),
            dataplane("backend-2", "backend", address="10.0.0.2"),
            dataplane("web-1", "web", outbounds=("backend",)),
        )
    )
    sub = engine.subscribe("default.web-1")
    sub.take_changes()
    full = sub.resources(types.ENDPOINT)["backend"]
    engine.apply_now(put(dataplane("backend-1", "backend", ready=False)))
    assert sub.take_changes() == {types.ENDPOINT: {"backend"}}
    assert len(sub.resources(types.ENDPOINT)["backend"].body) < len(full.body)
    engine.apply_now(put(dataplane("backend-1", "backend")))
    assert sub.take_changes() == {types.ENDPOINT: {"backend"}}
    assert sub.resources(types.ENDPOINT)["backend"].version == full.version


def test_a_protocol_change_re_generates_the_consumers_listeners() -> None:
    engine = Engine()
    engine.apply_now(
        put(dataplane("backend-1", "backend"), dataplane("web-1", "web", outbounds=("backend",)))
    )
    sub = engine.subscribe("default.web-1")
    sub.take_changes()
    engine.apply_now(put(dataplane("backend-1", "backend", protocol="tcp")))
    changes = sub.take_changes()
    # Without policies the service cluster is the same for http and tcp (HTTP/2 options
    # only, as Kuma builds it); the outbound listener changes from HTTP to TCP proxying.
    assert types.CLUSTER not in changes
    assert changes[types.LISTENER] == {"outbound:127.0.0.1:20000"}


def known(sub: Subscription) -> bool:
    # A function, so the type checker does not pin the property's value between steps.
    return sub.known


def test_an_unknown_proxy_waits_then_becomes_known() -> None:
    engine = Engine()
    sub = engine.subscribe("default.web-1")
    assert not known(sub)
    assert sub.resources(types.LISTENER) == {}
    engine.apply_now(put(dataplane("web-1", "web")))
    assert known(sub)
    assert types.LISTENER in sub.take_changes()
    engine.apply_now([ResourceEvent(Operation.DELETE, dataplane("web-1", "web"), _META, 2)])
    assert not known(sub)
    assert sub.take_changes()[types.LISTENER] == {"inbound:10.0.0.1:10000", "kuma:envoy:admin"}


def test_versions_are_content_hashes_stable_across_engines() -> None:
    one, two = Engine(), Engine()
    for engine in (one, two):
        engine.apply_now(put(dataplane("web-1", "web", outbounds=("web",))))
    a, b = one.subscribe("default.web-1"), two.subscribe("default.web-1")
    for type_url in (types.CLUSTER, types.ENDPOINT, types.LISTENER):
        assert {n: r.version for n, r in a.resources(type_url).items()} == {
            n: r.version for n, r in b.resources(type_url).items()
        }


def test_memory_follows_connections() -> None:
    engine = Engine()
    engine.apply_now(put(dataplane("web-1", "web", outbounds=("web",))))
    sub = engine.subscribe("default.web-1")
    engine.unsubscribe(sub)
    assert len(engine.proxies) == 0
    assert engine.proxies.consumer_entries == 0


@pytest.mark.anyio
async def test_run_follows_a_store() -> None:
    async with open_store("memory", {}) as store, anyio.create_task_group() as tg:
        await store.create(dataplane("backend-1", "backend"))
        await store.create(dataplane("web-1", "web", outbounds=("backend",)))
        engine = Engine()
        tg.start_soon(engine.run, store)
        with anyio.fail_after(5):
            await engine.wait_synced()
        async with engine.watch_proxy("default.web-1") as watch:
            assert watch.known
            watch.take_changes()
            await store.create(dataplane("backend-2", "backend", address="10.0.0.2"))
            with anyio.fail_after(5):
                await watch.wait_for_changes()
            assert watch.take_changes() == {types.ENDPOINT: {"backend"}}
        tg.cancel_scope.cancel()

"""A proxy's record outlives its last watch by ``linger`` seconds: a reconnect within them takes
the record as it is (no assembly from scratch), kept up to date meanwhile; then it is forgotten."""

from __future__ import annotations

from kuma.store import Operation, ResourceEvent
from kuma.xds.engine import Engine
from kuma.xds.engine.watches import ProxyRecord, ProxyWatches
from kuma.xds.generate import types

from .test_engine import _META, dataplane, known, put


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_watch_within_the_linger_time_takes_the_record_back() -> None:
    clock = Clock()
    first: list[str] = []
    last: list[str] = []

    def on_first(record: ProxyRecord) -> None:
        first.append(record.node_id)

    def on_last(record: ProxyRecord) -> None:
        last.append(record.node_id)

    watches = ProxyWatches(on_first, on_last, linger=10.0, clock=clock)
    one = watches.subscribe("default.a")
    watches.unsubscribe(one)
    assert last == []
    assert len(watches) == 1
    clock.now += 9.0
    again = watches.subscribe("default.a")
    assert again.record is one.record
    assert first == ["default.a"]
    watches.unsubscribe(again)
    # Its linger time starts again from this close; another proxy's watch sweeps the due ones.
    clock.now += 9.0
    watches.subscribe("default.b")
    assert last == []
    clock.now += 1.0
    other = watches.subscribe("default.c")
    assert last == ["default.a"]
    assert watches.get("default.a") is None
    watches.unsubscribe(other)
    clock.now += 10.0
    watches.expire()
    assert last == ["default.a", "default.c"]
    # A proxy forgotten is new again.
    watches.subscribe("default.a")
    assert first == ["default.a", "default.b", "default.c", "default.a"]


def test_a_lingering_proxy_is_kept_up_to_date() -> None:
    engine = Engine(linger=60.0)
    engine.apply_now(put(dataplane("web-1", "web", outbounds=("web",))))
    sub = engine.subscribe("default.web-1")
    engine.unsubscribe(sub)
    assert len(engine.proxies) == 1
    engine.apply_now([ResourceEvent(Operation.DELETE, dataplane("web-1", "web"), _META, 2)])
    back = engine.subscribe("default.web-1")
    assert back.record is sub.record
    assert not known(back)
    engine.apply_now(put(dataplane("web-1", "web", outbounds=("web",))))
    assert known(back)
    assert types.LISTENER in back.take_changes()


def test_without_linger_the_record_goes_with_its_last_watch() -> None:
    engine = Engine()
    engine.apply_now(put(dataplane("web-1", "web")))
    sub = engine.subscribe("default.web-1")
    engine.unsubscribe(sub)
    assert len(engine.proxies) == 0
    assert engine.subscribe("default.web-1").record is not sub.record


def test_a_batch_forgets_the_proxies_whose_linger_time_is_up() -> None:
    clock = Clock()
    engine = Engine(linger=10.0, linger_clock=clock)
    engine.apply_now(put(dataplane("web-1", "web")))
    engine.unsubscribe(engine.subscribe("default.web-1"))
    clock.now += 10.0  # the linger time is up: due, not yet swept
    assert len(engine.proxies) == 1
    engine.apply_now(put(dataplane("web-2", "web")))
    assert len(engine.proxies) == 0
    assert engine.proxies.consumer_entries == 0

"""The propagation view attributes the engine's measurements to the changes they belong to."""

from __future__ import annotations

from datetime import UTC, datetime

from kuma.gui.feed import LiveFeed
from kuma.gui.propagation import CHANGES_KEPT, PROXIES_LISTED, PropagationLog
from kuma.metrics import Metrics
from kuma.resources import Dataplane, ResourceMeta
from kuma.store import Operation, ResourceEvent
from kuma.xds.types import CLUSTER

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def event(name: str, operation: Operation = Operation.UPDATE) -> ResourceEvent:
    return ResourceEvent(operation, Dataplane(name=name), ResourceMeta("1", NOW, NOW), 1)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_measurements_go_to_the_change_they_measure() -> None:
    clock = Clock()
    log = PropagationLog(LiveFeed(), clock=clock, wall_clock=lambda: 5000.0)
    log.on_store_change(event("a"))  # arrives at 100.0
    clock.now = 103.0
    log.on_store_change(event("b", Operation.DELETE))  # arrives at 103.0
    clock.now = 103.5
    log.on_propagation("default.p1", 0.5)  # changed at 103.0: b
    log.on_propagation("default.p2", 3.49)  # changed at 100.01: a
    log.on_propagation("default.p3", 0.01)  # changed at 103.49: b
    clock.now = 110.0
    log.on_propagation("default.p4", 1.0)  # changed at 109: nothing recorded near it
    document = log.document()
    newest, oldest = document["changes"]
    assert (newest["name"], newest["operation"], newest["proxies"]) == ("b", "DELETE", 2)
    assert newest["max"] == 0.5
    assert newest["slowest"] == [
        {"proxy": "default.p1", "seconds": 0.5},
        {"proxy": "default.p3", "seconds": 0.01},
    ]
    assert (oldest["name"], oldest["proxies"], oldest["median"]) == ("a", 1, 3.49)
    assert document["measured"] == 4
    assert document["unmatched"] == 1
    assert document["recent"]["max"] == 3.49


def test_history_and_listed_proxies_are_bounded() -> None:
    clock = Clock()
    log = PropagationLog(LiveFeed(), clock=clock)
    for index in range(CHANGES_KEPT + 5):
        clock.now += 10
        log.on_store_change(event(f"dp-{index}"))
    for index in range(20):
        log.on_propagation(f"default.p{index}", index / 1000)
    changes = log.document()["changes"]
    assert len(changes) == CHANGES_KEPT
    assert changes[0]["proxies"] == 20
    assert len(changes[0]["slowest"]) == PROXIES_LISTED
    assert changes[0]["slowest"][0] == {"proxy": "default.p19", "seconds": 0.019}


def test_metrics_hand_each_measurement_to_the_gui() -> None:
    """The hook the runtime wires (``metrics.on_propagation = gui.on_propagation``): every
    propagation the histogram observes is handed over with its proxy."""
    metrics = Metrics(clock=lambda: 10.25)
    heard: list[tuple[str, float]] = []
    metrics.on_propagation = lambda node, seconds: heard.append((node, seconds))
    metrics.on_response("default.a", CLUSTER, 1, "n1")  # a response alone measures nothing
    metrics.on_change_delivered("default.a", 10.0)  # the stream: a change reached the proxy
    assert heard == [("default.a", 0.25)]

"""The send step (``kuma.xds.server.session``): a change reaching a parked session behind a
``CompositeWatch`` is sent from one loop callback, without waking the send loop's task; whatever
the step cannot finish at once (a write that would wait, a Dataplane gone, an error) the task
finishes, in order."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pytest

from kuma.xds.composite import CompositeWatch
from kuma.xds.server import session as session_module
from kuma.xds.server.delta import Desired
from kuma.xds.server.incoming import TypeFilter
from kuma.xds.server.observer import NoopObserver
from kuma.xds.server.session import Session
from kuma.xds.wakeup import Waitable

pytestmark = pytest.mark.anyio

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
NODE = "default.web-1"


class Response:
    type_url = CLUSTER
    resources: list[Any] = []

    def __init__(self, nonce: str) -> None:
        self.nonce = nonce


class Stream:
    """A server stream whose writes are recorded with who wrote them: the step (no task) or
    the send loop's task; ``send_now`` (patched in) writes at once unless ``blocked``."""

    def __init__(self) -> None:
        self.requests: asyncio.Queue[Any] = asyncio.Queue()
        self.sent: list[tuple[str, str]] = []
        self.blocked: set[str] = set()

    def send_now(self, stream: Any, message: Any) -> bool:
        assert stream is self
        if message.nonce in self.blocked:
            return False
        self.sent.append((message.nonce, "step" if asyncio.current_task() is None else "task"))
        return True

    async def recv_message(self) -> Any:
        return await self.requests.get()

    async def send_message(self, message: Any) -> None:
        await asyncio.sleep(0)  # a write that suspends once (the transport's wait), not a timer
        self.sent.append((message.nonce, "awaited"))


class State:
    """Each change taken is one response per changed name, named after it."""

    def __init__(self) -> None:
        self.changed: list[str] = []
        self.fail: Exception | None = None

    @property
    def has_work(self) -> bool:
        return bool(self.changed)

    def handle_request(self, request: Any) -> None:
        return None

    def resources_changed(self, changes: Mapping[str, Iterable[str]]) -> None:
        for names in changes.values():
            self.changed.extend(sorted(names))

    def build_responses(self, desired: Desired) -> list[Any]:
        if self.fail is not None:
            # Once: the error must reach the stream's end from where it was raised, not be
            # raised again by a second build.
            failure, self.fail = self.fail, None
            raise failure
        built, self.changed = [Response(name) for name in self.changed], []
        return built


class Watch(Waitable):
    """A listenable primary watch whose changes the test marks."""

    def __init__(self) -> None:
        super().__init__()
        self.changes: dict[str, set[str]] = {}
        self.known = True
        self.node_id = NODE

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    def take_changes(self) -> dict[str, set[str]]:
        taken, self.changes = self.changes, {}
        return taken

    def resources(self, type_url: str) -> Mapping[str, Any]:
        return {}

    def mark(self, *names: str) -> None:
        self.changes.setdefault(CLUSTER, set()).update(names)
        self._changed()


class Grant:
    def on_end(self, callback: Callable[[str], None]) -> None:
        pass


@pytest.fixture
def stream(monkeypatch: pytest.MonkeyPatch) -> Stream:
    stream = Stream()
    monkeypatch.setattr(session_module, "send_now", stream.send_now)
    return stream


async def running(stream: Stream, state: State, watch: Watch) -> tuple[Session, asyncio.Task[None]]:
    composite = CompositeWatch(watch, frozenset(), [])
    session = Session(
        stream,  # type: ignore[arg-type]
        state,
        composite,
        NoopObserver(),
        NODE,
        TypeFilter("delta", NODE),
    )
    task = asyncio.ensure_future(session.run(Grant()))  # type: ignore[arg-type]
    await until(lambda: session._parked)
    return session, task


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110 - the conditions are plain attributes
            await asyncio.sleep(0)


async def ended(stream: Stream, task: asyncio.Task[None]) -> None:
    await stream.requests.put(None)  # the client ends its side
    await asyncio.wait_for(task, 5)


async def test_a_change_to_a_parked_session_is_written_by_the_step_not_the_task(
    stream: Stream,
) -> None:
    state, watch = State(), Watch()
    _session, task = await running(stream, state, watch)
    watch.mark("a")
    watch.mark("b")  # the same turn: one step takes both
    await until(lambda: len(stream.sent) == 2)
    assert stream.sent == [("a", "step"), ("b", "step")]
    watch.mark("c")
    await until(lambda: len(stream.sent) == 3)
    assert stream.sent[2] == ("c", "step")
    await ended(stream, task)


async def test_a_write_that_would_wait_is_finished_by_the_task_in_order(stream: Stream) -> None:
    state, watch = State(), Watch()
    session, task = await running(stream, state, watch)
    stream.blocked = {"b"}
    watch.mark("a", "b", "c")
    await until(lambda: len(stream.sent) == 3)
    # "a" written by the step; "b" would wait, so the task writes it (awaiting) and "c" after.
    assert stream.sent == [("a", "step"), ("b", "awaited"), ("c", "task")]
    stream.blocked = set()
    await until(lambda: session._parked)  # the task finished the handed-over work
    watch.mark("d")  # parked again: steps resume
    await until(lambda: len(stream.sent) == 4)
    assert stream.sent[3] == ("d", "step")
    await ended(stream, task)


async def test_an_error_in_a_step_ends_the_stream_with_that_error(stream: Stream) -> None:
    state, watch = State(), Watch()
    _session, task = await running(stream, state, watch)
    state.fail = RuntimeError("building failed")
    watch.mark("a")
    with pytest.raises(RuntimeError, match="building failed"):
        await asyncio.wait_for(task, 5)
    assert stream.sent == []


async def test_a_proxy_whose_dataplane_went_is_held_by_the_task_then_updated(
    stream: Stream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kuma.xds.server.session")
    state, watch = State(), Watch()
    _session, task = await running(stream, state, watch)
    watch.known = False
    watch.mark("a")
    kept = "keeping its last configuration"
    await until(lambda: any(kept in record.getMessage() for record in caplog.records))
    assert stream.sent == []
    watch.known = True
    watch.mark("b")
    await until(lambda: len(stream.sent) == 2)
    assert sorted(nonce for nonce, _ in stream.sent) == ["a", "b"]
    await ended(stream, task)


async def test_after_the_stream_ended_changes_and_late_steps_do_nothing(stream: Stream) -> None:
    state, watch = State(), Watch()
    session, task = await running(stream, state, watch)
    await ended(stream, task)
    watch.mark("a")  # no longer intercepted: nothing is queued, the composite wakes nobody
    assert not session._step_due
    session.step()  # a step that was due when the stream ended: it takes nothing, sends nothing
    assert watch.changes == {CLUSTER: {"a"}}
    assert stream.sent == []
    assert not session._parked

"""How one ADS stream's two loops start and end together (``kuma.xds.server.session.Session``):
the receive loop in the stream's own task, the send loop in one more."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pytest

from kuma.xds.server.delta import Desired
from kuma.xds.server.incoming import TypeFilter as _TypeFilter
from kuma.xds.server.observer import NoopObserver
from kuma.xds.server.session import Session as _Session

pytestmark = pytest.mark.anyio


class FakeStream:
    """A grpclib server stream without grpclib's internals: the session uses its public
    ``recv_message`` and ``send_message``."""

    def __init__(self, send_error: BaseException | None = None) -> None:
        self.requests: asyncio.Queue[Any] = asyncio.Queue()
        self.sent: list[Any] = []
        self.send_error = send_error

    async def recv_message(self) -> Any:
        return await self.requests.get()

    async def send_message(self, message: Any) -> None:
        if self.send_error is not None:
            raise self.send_error
        self.sent.append(message)


class Response:
    type_url = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
    resources: list[Any] = []
    nonce = "1"


class FakeState:
    """Has work (one response) until it is built."""

    def __init__(self) -> None:
        self.has_work = True

    def handle_request(self, request: Any) -> None:
        return None

    def resources_changed(self, changes: Mapping[str, Iterable[str]]) -> None:
        pass

    def build_responses(self, desired: Desired) -> list[Any]:
        self.has_work = False
        return [Response()]


class FakeWatch:
    known = True
    resources: Any = None

    def __init__(self, slow_to_cancel: bool = False) -> None:
        self.waiting = asyncio.Event()
        self.woken = asyncio.Event()
        #: Cancelled, the wait takes until ``finish`` is set to end (a send loop that needs
        #: more than one loop turn to stop).
        self.slow_to_cancel = slow_to_cancel
        self.cancelled = asyncio.Event()
        self.finish = asyncio.Event()

    def take_changes(self) -> dict[str, set[str]]:
        return {}

    async def wait_for_changes(self) -> None:
        self.waiting.set()
        try:
            await self.woken.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            if self.slow_to_cancel:
                await self.finish.wait()
            raise

    def poke(self) -> None:
        self.woken.set()


class FakeGrant:
    def __init__(self, ended: str | None = None) -> None:
        self.ended = ended
        self.callback: Callable[[str], None] | None = None

    def on_end(self, callback: Callable[[str], None]) -> None:
        self.callback = callback
        if self.ended is not None:
            callback(self.ended)

    def end(self, reason: str) -> None:
        assert self.callback is not None
        self.callback(reason)


def session(stream: FakeStream, watch: FakeWatch) -> _Session:
    return _Session(
        stream,  # type: ignore[arg-type]
        FakeState(),
        watch,  # type: ignore[arg-type]
        NoopObserver(),
        "default.web-1",
        _TypeFilter("delta", "default.web-1"),
    )


def other_tasks() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {asyncio.current_task()}


async def test_the_client_ending_its_side_ends_the_send_loop_too() -> None:
    stream, watch = FakeStream(), FakeWatch()
    before = other_tasks()
    run = asyncio.ensure_future(session(stream, watch).run(FakeGrant()))  # type: ignore[arg-type]
    await watch.waiting.wait()  # the send loop sent its response and waits for changes
    assert len(stream.sent) == 1
    await stream.requests.put(None)
    await asyncio.wait_for(run, 5)
    assert other_tasks() == before


async def test_a_failing_send_loop_interrupts_the_receive_and_raises_its_error() -> None:
    stream, watch = FakeStream(send_error=RuntimeError("the transport broke")), FakeWatch()
    before = other_tasks()
    with pytest.raises(RuntimeError, match="the transport broke"):
        await asyncio.wait_for(
            session(stream, watch).run(FakeGrant()),  # type: ignore[arg-type]
            5,
        )
    assert other_tasks() == before


async def test_an_ending_grant_stops_both_loops_and_says_why() -> None:
    stream, watch = FakeStream(), FakeWatch()
    grant = FakeGrant()
    served = session(stream, watch)
    before = other_tasks()
    run = asyncio.ensure_future(served.run(grant))  # type: ignore[arg-type]
    await watch.waiting.wait()
    grant.end("token revoked")
    await asyncio.wait_for(run, 5)  # returns: the caller turns ``revoked`` into its status
    assert served.revoked == "token revoked"
    assert other_tasks() == before


async def test_a_grant_that_has_already_ended_stops_the_stream_at_once() -> None:
    stream, watch = FakeStream(), FakeWatch()
    served = session(stream, watch)
    await asyncio.wait_for(served.run(FakeGrant(ended="token expired")), 5)  # type: ignore[arg-type]
    assert served.revoked == "token expired"


async def test_a_grant_ending_after_the_client_left_changes_nothing() -> None:
    stream, watch = FakeStream(), FakeWatch()
    grant = FakeGrant()
    served = session(stream, watch)
    run = asyncio.ensure_future(served.run(grant))  # type: ignore[arg-type]
    await watch.waiting.wait()
    await stream.requests.put(None)
    await asyncio.wait_for(run, 5)
    grant.end("token revoked")  # after the stream: nothing to cancel, nothing raised
    assert not run.cancelled()
    assert run.exception() is None


async def test_a_grant_ending_while_the_send_loop_stops_changes_nothing() -> None:
    stream, watch = FakeStream(), FakeWatch(slow_to_cancel=True)
    grant = FakeGrant()
    served = session(stream, watch)
    run = asyncio.ensure_future(served.run(grant))  # type: ignore[arg-type]
    await watch.waiting.wait()
    await stream.requests.put(None)
    await watch.cancelled.wait()  # the client left; the session waits for its send loop
    grant.end("token revoked")
    watch.finish.set()
    await asyncio.wait_for(run, 5)  # ended as the client's leaving ends it, not cancelled


async def test_cancelled_from_outside_it_stays_cancelled_and_leaves_no_task() -> None:
    stream, watch = FakeStream(), FakeWatch()
    before = other_tasks()
    run = asyncio.ensure_future(session(stream, watch).run(FakeGrant()))  # type: ignore[arg-type]
    await watch.waiting.wait()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert other_tasks() == before


async def test_cancelled_from_outside_while_the_grant_ends_it_stays_cancelled() -> None:
    stream, watch = FakeStream(), FakeWatch()
    grant = FakeGrant()
    run = asyncio.ensure_future(session(stream, watch).run(grant))  # type: ignore[arg-type]
    await watch.waiting.wait()
    grant.end("token revoked")  # the session interrupts its own receive...
    run.cancel()  # ...and kuma-cp stops in the same loop turn: the outside cancel wins
    with pytest.raises(asyncio.CancelledError):
        await run

"""An idle ADS stream keeps no response it has sent.

A response carries a copy of every resource it sent; a stream that kept its last one while
waiting for the next change held ~10 KB per proxy for nothing (benchmarks/RESULTS.md, "kuma-cp's
memory per connected proxy"). Looked at through the stream tasks' own frames: whatever is
referenced from a waiting coroutine is what the stream keeps. Nor does its transport hold a
``collections.deque`` (760 bytes each, ~26 per connection before :mod:`kuma.xds.server.compact`)
or a dispatch table of bound methods of its own (h2's and grpclib's, 2.9 KB per connection).
Nor does grpclib's ``request_handler`` frame keep the request's headers and metadata (the token
among them) once the stream is authenticated (:mod:`kuma.xds.server.request_headers`).
"""

from __future__ import annotations

import asyncio
import gc
from collections import deque
from collections.abc import Iterator
from types import FrameType, MethodType
from typing import Any

import anyio
import pytest
from anyio.abc import TaskStatus
from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryResponse
from grpclib.client import Channel
from grpclib.server import request_handler

from kuma.xds.generate.types import CLUSTER
from kuma.xds.server import serve
from kuma.xds.server.compact import SmallDeque
from tests.fixtures.polling import until

from .fakes import DEADLINE, FakeSource, RecordingObserver, delta_state, delta_stream

pytestmark = pytest.mark.anyio


def _frames(task: asyncio.Task[Any]) -> Iterator[FrameType]:
    """The frames of a task's coroutine and of every coroutine it awaits."""
    coro: Any = task.get_coro()
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            yield frame
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)


def _held_responses() -> list[str]:
    """Where a sent response is still referenced from a waiting coroutine's locals."""
    held = []
    for task in asyncio.all_tasks() - {asyncio.current_task()}:  # the test's own frames hold one
        for frame in _frames(task):
            for name, value in frame.f_locals.items():
                values = value if isinstance(value, list) else [value]
                if any(isinstance(v, DeltaDiscoveryResponse) for v in values):
                    held.append(f"{frame.f_code.co_qualname}: {name}")
    return held


_TRANSPORT_MODULES = ("grpclib.", "h2.", "hpack.", "asyncio.locks", "asyncio.queues")


def _transport_waste() -> list[str]:
    """The deques and bound-method tables reachable from each served stream (and its
    connection's protocol) through the transport libraries' objects."""
    streams = [
        frame.f_locals["stream"]
        for task in asyncio.all_tasks()
        for frame in _frames(task)
        if frame.f_code.co_qualname == "AdsServer._run"
    ]
    assert streams
    roots = streams + [s._stream.connection._transport.get_protocol() for s in streams]
    found, seen, todo = [], {id(root) for root in roots}, roots
    while todo:
        node = todo.pop()
        for child in gc.get_referents(node):
            if id(child) in seen:
                continue
            seen.add(id(child))
            kind = type(child)
            if kind is deque:
                found.append(f"a deque under {type(node).__qualname__}")
            elif kind is dict and child and all(type(v) is MethodType for v in child.values()):
                found.append(f"a table of bound methods under {type(node).__qualname__}")
            elif kind in (dict, list, SmallDeque) or kind.__module__.startswith(_TRANSPORT_MODULES):
                todo.append(child)
    return found


def _held_headers() -> list[str]:
    """The request headers a running grpclib ``request_handler`` still holds."""
    coros: list[Any] = [task.get_coro() for task in asyncio.all_tasks()]
    handlers = [
        dict(coro.cr_frame.f_locals)
        for coro in coros
        if getattr(coro, "cr_code", None) is request_handler.__code__
    ]
    assert [names["method_name"] for names in handlers] == [
        "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
    ]
    return [name for name in ("headers", "headers_map", "metadata") if handlers[0][name]]


async def test_an_idle_stream_holds_no_response() -> None:
    source, observer = FakeSource(), RecordingObserver()
    source.proxy().put(CLUSTER, "a")
    source.proxy().put(CLUSTER, "b")
    serving = anyio.CancelScope()

    async def run(*, task_status: TaskStatus[int]) -> None:
        with serving:
            await serve(source, "127.0.0.1", 0, observer, task_status=task_status)

    with anyio.fail_after(DEADLINE * 3):
        async with anyio.create_task_group() as tg:
            port: int = await tg.start(run)
            async with Channel("127.0.0.1", port) as channel, delta_stream(channel) as client:
                await client.send(CLUSTER)
                response = await client.recv()
                assert set(delta_state(response)) == {"a", "b"}
                await client.ack(response)
                # The server's send loop is waiting for the next change once it has reported
                # the response; from then on nothing of it may be referenced.
                await observer.wait_for(lambda event: event[0] == "response")
                await until(lambda: not _held_responses(), within=DEADLINE)
                assert _transport_waste() == []
                assert _held_headers() == []
                # The swapped objects go on working: a second change on the same stream.
                source.proxy().put(CLUSTER, "c")
                assert "c" in delta_state(await client.recv())
                serving.cancel()

"""``serve``: ADS on a real loopback port, until cancelled."""

from __future__ import annotations

import socket

import anyio
import pytest
from anyio.abc import TaskStatus
from grpclib.client import Channel

from kuma.xds.generate.types import CLUSTER
from kuma.xds.server import serve

from .fakes import DEADLINE, FakeSource, RecordingObserver, delta_state, delta_stream

pytestmark = pytest.mark.anyio


async def test_serve_on_a_free_port_until_cancelled() -> None:
    source, observer = FakeSource(), RecordingObserver()
    source.proxy().put(CLUSTER, "a")
    serving = anyio.CancelScope()

    async def run(*, task_status: TaskStatus[int]) -> None:
        with serving:
            await serve(source, "127.0.0.1", 0, observer, task_status=task_status)

    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            port: int = await tg.start(run)
            async with Channel("127.0.0.1", port) as channel, delta_stream(channel) as client:
                await client.send(CLUSTER)
                assert set(delta_state(await client.recv())) == {"a"}
                serving.cancel()
                # Shutting down ends the open streams.
                await observer.wait_for(lambda event: event[0] == "close")
    assert serving.cancelled_caught
    # The listening socket is gone.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()

"""kuma.xds.server.teardown: lost connections are torn down in order, a batch per loop pass,
so that other work (a new connection's handshake step) runs between the batches."""

from __future__ import annotations

import asyncio
import functools

import pytest

from kuma.xds.server import teardown

pytestmark = pytest.mark.anyio


async def test_teardowns_run_in_order_a_batch_per_loop_pass() -> None:
    done: list[int] = []
    count = teardown.BATCH * 3 + 5
    for i in range(count):
        teardown.tear_down_later(functools.partial(done.append, i))
    assert teardown.pending() == count
    # Another connection's step, due in the next pass: it runs before most teardowns.
    stepped_after: list[int] = []
    asyncio.get_running_loop().call_soon(lambda: stepped_after.append(len(done)))
    await asyncio.sleep(0)
    assert len(done) == teardown.BATCH
    assert stepped_after == [teardown.BATCH]
    for _ in range(3):  # the rest: a batch per pass
        await asyncio.sleep(0)
    assert teardown.pending() == 0
    assert done == list(range(count))


async def test_a_failing_teardown_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    done: list[int] = []

    def fails() -> None:
        raise RuntimeError("boom")

    teardown.tear_down_later(fails)
    teardown.tear_down_later(lambda: done.append(1))
    await asyncio.sleep(0)
    assert done == [1]
    assert "tearing down a lost dp connection" in caplog.text

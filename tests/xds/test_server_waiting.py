"""Streams of proxies without a Dataplane (issue 17, defect 5): they wait, as in Kuma, but
each node is logged once at info, the waiting streams are counted for a gauge, and one
connection may hold only so many of them."""

from __future__ import annotations

import logging
from functools import partial

import anyio
import pytest
from anyio.abc import TaskStatus
from envoy.config.core.v3.base_pb2 import Node
from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryRequest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from kuma.xds.generate.types import CLUSTER
from kuma.xds.server import AggregatedDiscoveryServiceStub, serve
from kuma.xds.server.waiting import MAX_WAITING_PER_CONNECTION

from .fakes import DEADLINE, FakeSource, RecordingObserver, delta_state, delta_stream

pytestmark = pytest.mark.anyio


async def test_unknown_nodes_wait_logged_once_counted_and_bounded_per_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="kuma.xds.server")
    source, observer = FakeSource(), RecordingObserver()
    async with anyio.create_task_group() as tg:
        port: int = await tg.start(partial(serve, source, "127.0.0.1", 0, observer))
        with anyio.fail_after(DEADLINE):
            async with Channel("127.0.0.1", port) as one, Channel("127.0.0.1", port) as two:
                async with (
                    delta_stream(one, "default.later") as first,
                    delta_stream(one, "default.later") as second,
                ):
                    await first.send(CLUSTER)
                    await second.send(CLUSTER)
                    await observer.wait_for(lambda e: e == ("waiting", 2))
                    lines = [r.getMessage() for r in caplog.records if "waits" in r.getMessage()]
                    assert len(lines) == 1
                    assert "'later'" in lines[0]
                    assert "'default'" in lines[0]
                    # The Dataplane appears: served, no longer waiting.
                    proxy = source.proxy("default.later")
                    proxy.put(CLUSTER, "a")
                    proxy.make_known()
                    assert set(delta_state(await first.recv())) == {"a"}
                    assert set(delta_state(await second.recv())) == {"a"}
                    await observer.wait_for(lambda e: e == ("waiting", 0))
                # Made-up nodes over one connection: the bound, then RESOURCE_EXHAUSTED.
                async with anyio.create_task_group() as holders:
                    for index in range(MAX_WAITING_PER_CONNECTION):
                        await holders.start(_hold, one, f"default.ghost-{index}")
                    await observer.wait_for(lambda e: e == ("waiting", MAX_WAITING_PER_CONNECTION))
                    with pytest.raises(GRPCError) as refused:
                        await _first_response(one, "default.ghost-16")
                    assert refused.value.status is Status.RESOURCE_EXHAUSTED
                    assert "default.ghost-16" in (refused.value.message or "")
                    # Another connection is not affected.
                    async with delta_stream(two, "default.other") as other:
                        await other.send(CLUSTER)
                        await observer.wait_for(
                            lambda e: e == ("waiting", MAX_WAITING_PER_CONNECTION + 1)
                        )
                    holders.cancel_scope.cancel()
        tg.cancel_scope.cancel()
    # One line per node: "later" once, each ghost once, "other" once; none for the refused.
    waits = [r for r in caplog.records if "waits" in r.getMessage()]
    assert len(waits) == 1 + MAX_WAITING_PER_CONNECTION + 1


async def _hold(channel: Channel, node_id: str, *, task_status: TaskStatus[None]) -> None:
    async with delta_stream(channel, node_id) as client:
        await client.send(CLUSTER)
        task_status.started()
        await anyio.sleep_forever()


async def _first_response(channel: Channel, node_id: str) -> None:
    stub = AggregatedDiscoveryServiceStub(channel)
    async with stub.DeltaAggregatedResources.open() as stream:
        await stream.send_message(DeltaDiscoveryRequest(node=Node(id=node_id), type_url=CLUSTER))
        await stream.recv_message()

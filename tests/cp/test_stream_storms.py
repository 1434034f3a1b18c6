"""Issue 17, defect 3: streams opened and dropped in rounds leave nothing behind. The control
plane is wired as kuma-cp wires it (memory store, engine, registration, insights, metrics, the
ADS server on a real port); each round registers a batch of sidecars, takes their first
responses, drops every connection and waits until all of it is forgotten. After a warm-up
round, the Python objects the collector tracks must come back to the same count: nothing kept
per stream."""

from __future__ import annotations

import gc
import itertools
import sys
from collections.abc import Callable
from functools import partial

import anyio
import orjson
import pytest
from envoy.config.core.v3.base_pb2 import Node
from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryRequest
from grpclib.client import Channel

from kuma.cp.registration import Registrar
from kuma.insights import Insights, MemoryInsightStore, dataplane_exists
from kuma.metrics import Metrics
from kuma.resources import Mesh
from kuma.store import ResourceEvent
from kuma.store.memory import MemoryStore
from kuma.xds.engine import Engine
from kuma.xds.generate.types import CLUSTER
from kuma.xds.server import AggregatedDiscoveryServiceStub, serve
from kuma.xds.server.observer import ObserverGroup
from tests.metrics.scrape import scrape

pytestmark = pytest.mark.anyio

STREAMS = 100
ROUNDS = 6


_rounds = itertools.count()


def sidecar(index: int, storm_round: int) -> Node:
    """Even: a sidecar that registers its Dataplane; odd: a stream for a node nobody knows
    (it waits, as in Kuma, until dropped), under a new name every round (anyone on the
    network can make up node ids)."""
    name = f"storm-{index}"
    if index % 2:
        return Node(id=f"default.ghost-{storm_round}-{index}")
    node = Node(id=f"default.{name}")
    resource = {
        "type": "Dataplane",
        "mesh": "default",
        "name": name,
        "networking": {
            "address": "127.0.0.1",
            "inbound": [
                {"port": 20000 + index, "servicePort": 8080, "tags": {"kuma.io/service": "web"}}
            ],
        },
    }
    node.metadata.update({"dataplane.resource": orjson.dumps(resource).decode()})
    return node


async def until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(60):
        while True:
            if condition():
                return
            await anyio.sleep(0.02)


def active_streams(metrics: Metrics) -> float | None:
    return scrape(metrics).value("kuma_xds_streams_active", protocol="delta")


async def follow_deletions(store: MemoryStore, insights: Insights) -> None:
    """What kuma-cp's change follower does for insights: hand them the store's changes."""
    async with store.watch() as events:
        async for item in events:
            if isinstance(item, ResourceEvent):
                insights.on_store_event(item)


async def deregistered(store: MemoryStore) -> None:
    with anyio.fail_after(60):
        while True:
            if (await store.list("Dataplane")).total == 0:
                return
            await anyio.sleep(0.02)


async def storm(port: int, opened: list[int]) -> None:
    """STREAMS sidecars, each on its own connection, until their first response; then every
    connection is dropped (no clean end of stream, as when a proxy dies)."""
    channels = [Channel("127.0.0.1", port) for _ in range(STREAMS)]
    storm_round = next(_rounds)
    try:
        async with anyio.create_task_group() as tg:
            for index, channel in enumerate(channels):
                tg.start_soon(first_response, channel, index, storm_round, opened)
    finally:
        for channel in channels:
            channel.close()


async def first_response(channel: Channel, index: int, storm_round: int, opened: list[int]) -> None:
    stub = AggregatedDiscoveryServiceStub(channel)
    stream = stub.DeltaAggregatedResources.open()
    await stream.__aenter__()
    await stream.send_message(
        DeltaDiscoveryRequest(node=sidecar(index, storm_round), type_url=CLUSTER)
    )
    if index % 2 == 0:
        await stream.recv_message()
    else:
        await stream.send_message(DeltaDiscoveryRequest(type_url=CLUSTER))  # still waiting
    opened.append(index)


async def test_streams_opened_and_dropped_in_rounds_leave_nothing_behind() -> None:
    store = MemoryStore()
    await store.create(Mesh(name="default"))
    metrics = Metrics()
    engine = Engine(on_batch=metrics.on_batch)
    insight_store = MemoryInsightStore()
    insights = Insights(
        insight_store,
        flush_interval=0.05,
        observer=metrics,
        dataplane_exists=partial(dataplane_exists, store),
    )
    registrar = Registrar(store, 0.01)
    observer = ObserverGroup([insights.tracker, metrics])
    counts: list[int] = []
    blocks: list[int] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(engine.run, store)
        tg.start_soon(insights.run)
        tg.start_soon(follow_deletions, store, insights)
        await tg.start(registrar.run)
        await engine.wait_synced()
        port: int = await tg.start(
            partial(serve, engine, "127.0.0.1", 0, observer, lifecycle=registrar)
        )
        for _ in range(ROUNDS):
            opened: list[int] = []
            await storm(port, opened)
            assert len(opened) == STREAMS
            # Everything per stream is let go: the streams, their insights once flushed, the
            # registrations once deregistered, the engine's proxies.
            await until(lambda: insights.tracker.tracked_streams == 0)
            await deregistered(store)
            await until(lambda: len(engine.proxies) == 0)
            await until(lambda: len(insight_store) == 0)  # every insight pruned
            await until(
                lambda: scrape(metrics).value("kuma_xds_streams_active", protocol="delta") == 0
            )
            await anyio.sleep(0.3)  # the dropped connections' transports finish closing
            gc.collect()
            counts.append(len(gc.get_objects()))
            blocks.append(sys.getallocatedblocks())
        tg.cancel_scope.cancel()
    # Rounds 1 and 2 warm caches up (interned strings, code, pools, label children); from then
    # on a leak of even one object per stream adds STREAMS per round. The lower of two rounds
    # is compared, as other work of the process (sockets closing) makes single counts jitter.
    # Objects the collector tracks (containers), and every memory block Python allocated
    # (strings and numbers too, which the collector does not track).
    assert min(counts[4:]) - min(counts[2:4]) < STREAMS, f"tracked objects per round: {counts}"
    assert min(blocks[4:]) - min(blocks[2:4]) < STREAMS, f"allocated blocks per round: {blocks}"

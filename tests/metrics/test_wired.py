"""The whole path as kuma-cp wires it: store -> engine -> ADS stream (grpclib in memory) ->
insights and metrics, read back over HTTP from the REST API (``/metrics`` and
``dataplanes+insights``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import anyio
import orjson
import pytest
from grpclib.testing import ChannelFor

from kuma.api import ApiServer, ApiSettings, build_app
from kuma.api import InsightProvider as ApiInsightProvider
from kuma.insights import FlushObserver, InsightProvider, Insights, MemoryInsightStore, is_online
from kuma.metrics import CONTENT_TYPE, Metrics, metrics_routes
from kuma.resources import Dataplane, Mesh, from_document
from kuma.store import Store, open_store
from kuma.xds.engine import Engine
from kuma.xds.generate.types import CLUSTER, LISTENER
from kuma.xds.server import AdsServer
from kuma.xds.server.observer import ObserverGroup, StreamObserver
from tests.xds.fakes import DEADLINE, RecordingObserver, delta_stream

from .scrape import Scrape

pytestmark = pytest.mark.anyio


def dataplane(name: str, service: str, address: str, *outbounds: str) -> Dataplane:
    resource = from_document(
        {
            "type": "Dataplane",
            "mesh": "default",
            "name": name,
            "networking": {
                "address": address,
                "inbound": [
                    {"port": 10000, "servicePort": 8000, "tags": {"kuma.io/service": service}}
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


class Http:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def get(self, path: str) -> tuple[str, bytes]:
        async with self.session.get(self.base + path) as response:
            assert response.status == 200, await response.text()
            return response.headers["Content-Type"], await response.read()

    async def scrape(self) -> Scrape:
        _, body = await self.get("/metrics")
        return Scrape(body.decode())

    async def insight(self, name: str) -> Any:
        _, body = await self.get(f"/meshes/default/dataplanes+insights/{name}")
        return orjson.loads(body)["dataplaneInsight"]


@asynccontextmanager
async def api(store: Store, insights: Insights, metrics: Metrics) -> AsyncIterator[Http]:
    app = build_app(store, ApiSettings(port=0), insights, metrics_routes(metrics))
    async with (
        ApiServer(app, "127.0.0.1", 0) as server,
        aiohttp.ClientSession() as session,
    ):
        yield Http(session, f"http://127.0.0.1:{server.port}")


class FlushSignal(Metrics):
    """Metrics that also tell the test when insights were flushed."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed = anyio.Event()

    def on_insight_flush(self, written: int, batches: int, seconds: float) -> None:
        super().on_insight_flush(written, batches, seconds)
        self.flushed.set()


async def test_streams_insights_and_metrics_end_to_end() -> None:
    metrics = FlushSignal()
    recorder = RecordingObserver()
    engine = Engine(on_batch=metrics.on_batch)
    insights = Insights(MemoryInsightStore(), flush_interval=10, observer=metrics)
    # The recorder last: when it has seen a call, insights and metrics have counted it.
    observer = ObserverGroup([insights.tracker, metrics, recorder])
    async with open_store("memory", {}) as store:
        await store.create(Mesh(name="default"))
        web = await store.create(dataplane("web-1", "web", "10.0.0.1", "backend"))
        await store.create(dataplane("backend-1", "backend", "10.0.0.2"))
        async with anyio.create_task_group() as tg, api(store, insights, metrics) as http:
            tg.start_soon(engine.run, store)
            tg.start_soon(insights.run)
            await engine.wait_synced()
            content_type, _ = await http.get("/metrics")
            assert content_type == CONTENT_TYPE
            async with (
                ChannelFor([AdsServer(engine, observer)]) as channel,
                delta_stream(channel, "default.web-1") as client,
            ):
                await client.send(CLUSTER)
                clusters = await client.recv()
                await client.ack(clusters)
                await client.send(LISTENER)
                listeners = await client.recv()
                await client.nack(listeners, "listener rejected")

                await recorder.wait_for(lambda event: event[0] == "nack")
                s = await http.scrape()
                assert s.value("kuma_xds_responses_nacked_total", type="lds") == 1
                assert s.value("kuma_xds_streams_active", protocol="delta") == 1
                assert s.value("kuma_xds_responses_sent_total", type="cds") == 1
                assert s.value("kuma_xds_responses_acked_total", type="cds") == 1
                assert s.value("kuma_xds_propagation_seconds_count") == 0
                batches = s.value("kuma_engine_batch_events_count")
                insight = await http.insight("web-1")
                assert is_online(insight)
                [subscription] = insight["subscriptions"]
                assert subscription["status"]["total"] == {
                    "responsesSent": "2",
                    "responsesAcknowledged": "1",
                    "responsesRejected": "1",
                }
                assert subscription["status"]["lds"] == {
                    "responsesSent": "1",
                    "responsesRejected": "1",
                }
                assert subscription["version"]["envoy"] == {"version": "1.40.0"}

                # A store change reaches the proxy: measured from the engine's stamp.
                changed = dataplane("web-1", "web", "10.0.0.1", "backend", "db")
                await store.update(changed, version=web.meta.version)
                updates = [await client.recv(), await client.recv()]
                assert [r.type_url for r in updates] == [CLUSTER, LISTENER]  # the db outbound
                for response in updates:
                    await client.ack(response)
                s = await http.scrape()
                assert s.value("kuma_xds_propagation_seconds_count") == 1
                assert s.value("kuma_engine_batch_events_count") == (batches or 0) + 1
                assert s.value("kuma_engine_proxies_assembled_total") == 1
                await client.close()

            await recorder.wait_for(lambda event: event[0] == "close")
            s = await http.scrape()
            assert s.value("kuma_xds_streams_active", protocol="delta") == 0
            assert not is_online(await http.insight("web-1"))
            with anyio.fail_after(DEADLINE):
                await metrics.flushed.wait()  # the close is written at once, not after 10 s
            stored = insights.store.get("default", "web-1")
            assert stored is not None
            assert not stored.online
            assert (await http.scrape()).value("kuma_insights_flushed_total") == 1
            tg.cancel_scope.cancel()


def test_the_components_fit_the_interfaces_they_are_wired_to() -> None:
    # Checked by mypy: the runtime hands these to the server, the flusher and the API.
    metrics = Metrics()
    insights = Insights(MemoryInsightStore(), flush_interval=10, observer=metrics)
    observer: StreamObserver = metrics
    flushes: FlushObserver = metrics
    provider: InsightProvider = insights
    api_provider: ApiInsightProvider = insights
    assert provider.insight("default", "web-1") is None
    assert api_provider.insight("default", "web-1") is None
    observer.on_stream_open(1, "default.web-1", "delta", "")
    flushes.on_insight_flush(1, 1, 0.0)

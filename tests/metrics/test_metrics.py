"""Every series is exposed and moves with the events that feed it; registries are isolated."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from kuma.insights import Insights, MemoryInsightStore
from kuma.metrics import InstrumentedStore, Metrics
from kuma.resources import Mesh, ResourceKey
from kuma.store import (
    ConflictError,
    NotFoundError,
    Problem,
    ResourceEvent,
    StoreUnavailableError,
    Synced,
    open_store,
)
from kuma.xds.engine import BatchStats
from kuma.xds.generate.types import CLUSTER, LISTENER

from .scrape import scrape

pytestmark = pytest.mark.anyio


def test_streams_and_responses_by_protocol_and_type() -> None:
    metrics = Metrics()
    before = scrape(metrics)
    assert before.value("kuma_xds_streams_active", protocol="delta") == 0
    assert before.value("kuma_xds_responses_sent_total", type="cds") == 0
    metrics.on_stream_open(1, "default.a", "delta", "1.40.0")
    metrics.on_stream_open(2, "default.b", "sotw", "1.40.0")
    metrics.on_stream_open(3, "default.c", "delta", "1.40.0")
    metrics.on_response("default.a", CLUSTER, 2, "1")
    metrics.on_response("default.a", CLUSTER, 2, "2")
    metrics.on_response("default.b", LISTENER, 1, "1")
    metrics.on_ack("default.a", CLUSTER, "1")
    metrics.on_nack("default.a", CLUSTER, "2", "bad")
    metrics.on_ack("default.b", LISTENER, "1")
    metrics.on_response("default.b", "type.googleapis.com/some.Other", 1, "2")
    metrics.on_stream_close(3, "default.c")
    after = scrape(metrics)
    assert after.value("kuma_xds_streams_active", protocol="delta") == 1
    assert after.value("kuma_xds_streams_active", protocol="sotw") == 1
    assert after.value("kuma_xds_streams_opened_total", protocol="delta") == 2
    assert after.value("kuma_xds_responses_sent_total", type="cds") == 2
    assert after.value("kuma_xds_responses_sent_total", type="lds") == 1
    assert after.value("kuma_xds_responses_sent_total", type="eds") == 0
    assert after.value("kuma_xds_responses_sent_total", type="other") == 1
    assert after.value("kuma_xds_responses_acked_total", type="cds") == 1
    assert after.value("kuma_xds_responses_nacked_total", type="cds") == 1
    assert after.value("kuma_xds_responses_acked_total", type="lds") == 1
    metrics.on_stream_close(99, "default.never-opened")  # no negative gauge
    assert scrape(metrics).value("kuma_xds_streams_active", protocol="delta") == 1


def test_propagation_is_measured_from_the_stamp_the_stream_reports() -> None:
    now = [100.0]
    metrics = Metrics(clock=lambda: now[0])
    metrics.on_response("default.a", CLUSTER, 1, "1")  # a response alone measures nothing
    metrics.on_change_delivered("default.a", 99.75)
    s = scrape(metrics)
    assert s.value("kuma_xds_propagation_seconds_count") == 1
    assert s.value("kuma_xds_propagation_seconds_sum") == pytest.approx(0.25)
    assert s.value("kuma_xds_propagation_seconds_bucket", le="0.25") == 1
    assert s.value("kuma_xds_propagation_seconds_bucket", le="0.1") == 0


def test_engine_batches() -> None:
    metrics = Metrics()
    metrics.on_batch(BatchStats(events=3, proxies_assembled=2, proxies_notified=5, seconds=0.02))
    metrics.on_batch(BatchStats(events=1, seconds=0.001))
    s = scrape(metrics)
    assert s.value("kuma_engine_batch_events_count") == 2
    assert s.value("kuma_engine_batch_events_sum") == 4
    assert s.value("kuma_engine_batch_seconds_sum") == pytest.approx(0.021)
    assert s.value("kuma_engine_proxies_assembled_total") == 2
    assert s.value("kuma_engine_proxies_notified_total") == 5


class ProblemStore:
    def __init__(self) -> None:
        self.found: list[Problem] = []

    def problems(self) -> Sequence[Problem]:
        return self.found


def test_store_problems_are_read_at_scrape_time() -> None:
    metrics = Metrics()
    store = ProblemStore()
    metrics.watch_problems(store)  # type: ignore[arg-type]  # only problems() is read
    assert scrape(metrics).value("kuma_store_problems") == 0
    store.found.append(Problem("meshes/default/dataplanes/web.yaml", "line 3: not YAML"))
    assert scrape(metrics).value("kuma_store_problems") == 1


async def test_store_calls_events_and_errors() -> None:
    metrics = Metrics()
    async with open_store("memory", {}) as raw:
        store = InstrumentedStore(raw, metrics)
        created = await store.create(Mesh(name="default"))
        with pytest.raises(ConflictError):
            await store.create(Mesh(name="default"))
        with pytest.raises(NotFoundError):
            await store.get(ResourceKey("Mesh", "", "nope"))
        await store.update(Mesh(name="default"), version=created.meta.version)
        assert store.name == "memory"
        assert list(store.problems()) == []
        s = scrape(metrics)
        assert s.value("kuma_store_operations_total", operation="create", outcome="ok") == 1
        assert s.value("kuma_store_operations_total", operation="create", outcome="conflict") == 1
        assert s.value("kuma_store_operations_total", operation="get", outcome="not_found") == 1
        assert s.value("kuma_store_operations_total", operation="update", outcome="ok") == 1
        assert s.value("kuma_store_operation_seconds_count", operation="create") == 2
        # Lost races and missing keys are answers, not store errors.
        assert s.value("kuma_store_errors_total", operation="create") is None

    class Down:
        async def delete(self, key: ResourceKey, *, version: str | None = None) -> None:
            raise StoreUnavailableError("etcd is down")

    broken = InstrumentedStore(Down(), metrics)  # type: ignore[arg-type]  # only delete is used
    with pytest.raises(StoreUnavailableError):
        await broken.delete(ResourceKey("Mesh", "", "default"))
    s = scrape(metrics)
    assert s.value("kuma_store_errors_total", operation="delete") == 1
    assert s.value("kuma_store_operations_total", operation="delete", outcome="unavailable") == 1


async def test_insight_flushes() -> None:
    metrics = Metrics()
    insights = Insights(MemoryInsightStore(), flush_interval=10, observer=metrics)
    insights.tracker.on_stream_open(1, "default.a", "delta", "")
    insights.tracker.on_stream_close(1, "default.a")
    await insights.flusher.flush_due()
    s = scrape(metrics)
    assert s.value("kuma_insights_flushed_total") == 1
    assert s.value("kuma_insights_flush_batches_total") == 1
    assert s.value("kuma_insights_flush_seconds_count") == 1
    metrics.on_insight_flush_error()
    assert scrape(metrics).value("kuma_insights_flush_errors_total") == 1


async def test_store_events_after_the_snapshot() -> None:
    metrics = Metrics()
    async with open_store("memory", {}) as store:
        await store.create(Mesh(name="before"))
        async with store.watch() as events:
            async for item in events:
                if isinstance(item, Synced):
                    break
            created = await store.create(Mesh(name="default"))
            await store.delete(created.key)
            for _ in range(2):
                item = await anext(events)
                assert isinstance(item, ResourceEvent)
                metrics.on_store_event(item)
    s = scrape(metrics)
    assert s.value("kuma_store_events_total", type="Mesh", operation="CREATE") == 1
    assert s.value("kuma_store_events_total", type="Mesh", operation="DELETE") == 1


def test_each_metrics_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.on_stream_open(1, "default.a", "delta", "")
    assert scrape(first).value("kuma_xds_streams_active", protocol="delta") == 1
    assert scrape(second).value("kuma_xds_streams_active", protocol="delta") == 0


def test_stale_replies_are_counted_apart_from_acks_and_nacks() -> None:
    metrics = Metrics()
    metrics.on_stale_reply("default.a", CLUSTER, "forged")
    metrics.on_stale_reply("default.a", "type.googleapis.com/other", "x")
    after = scrape(metrics)
    assert after.value("kuma_xds_stale_replies_total", type="cds") == 1
    assert after.value("kuma_xds_stale_replies_total", type="other") == 1
    assert after.value("kuma_xds_responses_acked_total", type="cds") == 0


def test_the_standard_process_series_are_exposed() -> None:
    """Issue 17, defect 9: RSS, CPU and open files, as every Prometheus client exposes them."""
    scraped = scrape(Metrics())
    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds"):
        value = scraped.value(name)
        assert value is not None
        assert value > 0

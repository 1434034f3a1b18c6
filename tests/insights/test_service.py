"""The provider the REST API reads, and insights following their Dataplanes' deletion."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kuma.insights import Insights, MemoryInsightStore, insight_store_for, is_online
from kuma.insights.model import MtlsInsight
from kuma.resources import Dataplane, ResourceMeta, from_document
from kuma.store import Operation, ResourceEvent
from kuma.xds.generate.types import CLUSTER

from .clocks import FakeClock

pytestmark = pytest.mark.anyio

NODE = "default.web-1"
_META = ResourceMeta("1", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))


def event(operation: Operation, name: str = "web-1") -> ResourceEvent:
    dataplane = from_document(
        {
            "type": "Dataplane",
            "mesh": "default",
            "name": name,
            "networking": {
                "address": "10.0.0.1",
                "inbound": [{"port": 10000, "tags": {"kuma.io/service": "web"}}],
            },
        }
    )
    assert isinstance(dataplane, Dataplane)
    return ResourceEvent(operation, dataplane, _META, 2)


def insights() -> tuple[FakeClock, Insights]:
    clock = FakeClock()
    return clock, Insights(
        MemoryInsightStore(clock=clock), flush_interval=10, instance_id="cp-1", wall_clock=clock
    )


async def test_a_read_is_live_for_streams_here_and_stored_for_the_rest() -> None:
    _, service = insights()
    assert service.insight("default", "web-1") is None
    service.tracker.on_stream_open(1, NODE, "delta", "1.40.0")
    service.tracker.on_response(NODE, CLUSTER, 1, "1")
    # Not flushed yet, and still exact: the live counters are read.
    live = service.insight("default", "web-1")
    assert live is not None
    assert is_online(live)
    assert live["subscriptions"][0]["status"]["total"] == {"responsesSent": "1"}
    service.tracker.on_stream_close(1, NODE)
    await service.flusher.flush_due()
    stored = service.insight("default", "web-1")
    assert stored is not None
    assert not is_online(stored)
    assert stored["subscriptions"][0]["status"]["cds"] == {"responsesSent": "1"}


async def test_the_insight_goes_with_its_dataplane() -> None:
    _, service = insights()
    service.tracker.on_stream_open(1, NODE, "delta", "")
    service.tracker.on_stream_close(1, NODE)
    await service.flusher.flush_due()
    assert service.insight("default", "web-1") is not None
    service.on_store_event(event(Operation.UPDATE))
    await service.prune()
    assert service.insight("default", "web-1") is not None
    service.on_store_event(event(Operation.DELETE))
    await service.prune()
    assert service.insight("default", "web-1") is None


async def test_deleted_while_connected_is_deleted_again_after_the_close() -> None:
    _, service = insights()
    service.tracker.on_stream_open(1, NODE, "delta", "")
    service.on_store_event(event(Operation.DELETE))
    await service.prune()
    service.tracker.on_stream_close(1, NODE)
    await service.flusher.flush_due()  # the final state is written: the insight is back
    assert service.store.get("default", "web-1") is not None
    await service.prune()
    assert service.store.get("default", "web-1") is None
    assert service.insight("default", "web-1") is None


async def test_a_dataplane_created_again_is_no_orphan() -> None:
    _, service = insights()
    service.tracker.on_stream_open(1, NODE, "delta", "")
    service.on_store_event(event(Operation.DELETE))
    await service.prune()
    service.on_store_event(event(Operation.CREATE))  # registered again while connected
    service.tracker.on_stream_close(1, NODE)
    await service.flusher.flush_due()
    await service.prune()
    assert service.insight("default", "web-1") is not None


def test_resource_stores_without_insight_storage_get_a_memory_one() -> None:
    assert isinstance(insight_store_for(object()), MemoryInsightStore)

    class Persisting:
        def __init__(self) -> None:
            self.store = MemoryInsightStore()

        def insight_store(self) -> MemoryInsightStore:
            return self.store

    persisting = Persisting()
    assert insight_store_for(persisting) is persisting.store


def test_instance_ids_are_unique_per_process() -> None:
    store = MemoryInsightStore()
    first = Insights(store, flush_interval=10).instance_id
    second = Insights(store, flush_interval=10).instance_id
    assert first != second


async def test_a_stream_for_a_node_without_a_dataplane_leaves_no_insight() -> None:
    """Issue 17, defect 3: streams under made-up node ids used to leave an insight each,
    forever (the memory that grew with every storm of new ids)."""
    clock = FakeClock()
    existing = {("default", "web-1")}

    async def exists(mesh: str, name: str) -> bool:
        return (mesh, name) in existing

    service = Insights(
        MemoryInsightStore(clock=clock),
        flush_interval=10,
        instance_id="cp-1",
        wall_clock=clock,
        dataplane_exists=exists,
    )
    service.tracker.on_stream_open(1, NODE, "delta", "")
    service.tracker.on_stream_open(2, "default.ghost", "delta", "")
    await service.flusher.flush_all()
    await service.prune()  # still connected: kept
    assert service.store.get("default", "ghost") is not None
    service.tracker.on_stream_close(1, NODE)
    service.tracker.on_stream_close(2, "default.ghost")
    await service.flusher.flush_due()
    await service.prune()
    assert service.store.get("default", "ghost") is None
    assert service.store.get("default", "web-1") is not None


async def test_the_mtls_section_is_stored_so_every_instance_shows_it() -> None:
    """The instance serving the proxy reports its certificate with the subscription; another
    instance sharing the insight store (it has no stream of the proxy) shows the same
    section once flushed, a rotation included."""
    clock = FakeClock()
    store = MemoryInsightStore(clock=clock)
    serving = Insights(store, flush_interval=10, instance_id="cp-1", wall_clock=clock)
    other = Insights(store, flush_interval=10, instance_id="cp-2", wall_clock=clock)
    certificates = {NODE: MtlsInsight(5_000.0, 1_000.0, "ca-1", ("ca-1",))}
    serving.tracker.mtls_of = certificates.get
    serving.tracker.on_stream_open(1, NODE, "delta", "1.40.0")
    live = serving.insight("default", "web-1")
    assert live is not None
    assert live["mTLS"]["certificateRegenerations"] == 1
    assert other.insight("default", "web-1") is None  # nothing flushed yet
    await serving.flusher.flush_all()
    shown = other.insight("default", "web-1")
    assert shown is not None
    assert shown["mTLS"] == {
        "certificateExpirationTime": "1970-01-01T01:23:20.000000Z",
        "lastCertificateRegeneration": "1970-01-01T00:16:40.000000Z",
        "certificateRegenerations": 1,
        "issuedBackend": "ca-1",
        "supportedBackends": ["ca-1"],
    }
    # A rotation changes no counter: the certificate hook marks the subscription changed.
    certificates[NODE] = MtlsInsight(9_000.0, 5_000.0, "ca-1", ("ca-1",))
    serving.tracker.touch([NODE, "default.unknown"])
    assert await serving.flusher.flush_all() == 1
    shown = other.insight("default", "web-1")
    assert shown is not None
    assert shown["mTLS"]["certificateRegenerations"] == 2
    assert shown["mTLS"]["lastCertificateRegeneration"] == "1970-01-01T01:23:20.000000Z"
    # The proxy disconnects: the last certificate stays on record.
    serving.tracker.on_stream_close(1, NODE)
    await serving.flusher.flush_all()
    shown = other.insight("default", "web-1")
    assert shown is not None
    assert not is_online(shown)
    assert shown["mTLS"]["certificateRegenerations"] == 2

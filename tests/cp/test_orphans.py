"""Orphaned registrations (issue 17): a registered Dataplane whose proxy has had no stream on
any live instance for ``runtime.universal.dataplaneCleanupAge`` is deleted, with
compare-and-swap; Dataplanes people defined never are."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from envoy.config.core.v3.base_pb2 import Node
from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryRequest
from grpclib.client import Channel

from kuma.cp.orphans import OrphanCollector
from kuma.cp.registration import REGISTRATION_LABEL
from kuma.insights import DataplaneInsight, DiscoverySubscription
from kuma.resources import Dataplane, Mesh, ResourceKey, from_document
from kuma.store import NotFoundError, ResourcePage
from kuma.store.memory import MemoryStore
from kuma.xds.generate.types import CLUSTER
from kuma.xds.server import AggregatedDiscoveryServiceStub
from tests.fixtures.etcd import EtcdServer
from tests.fixtures.processes import ManagedProcess, kuma_cp
from tests.store.harness_etcd import etcd_store

from .test_kuma_cp_etcd import etcd_env

pytestmark = pytest.mark.anyio

AGE = 10.0


def document(name: str, *, registered: bool = True) -> dict[str, object]:
    return {
        "type": "Dataplane",
        "mesh": "default",
        "name": name,
        "labels": {REGISTRATION_LABEL: "gone.1"} if registered else {},
        "networking": {
            "address": "127.0.0.1",
            "inbound": [{"port": 18080, "servicePort": 8080, "tags": {"kuma.io/service": name}}],
        },
    }


def dataplane(name: str, *, registered: bool = True) -> Dataplane:
    resource = from_document(document(name, registered=registered))
    assert isinstance(resource, Dataplane)
    return resource


def online(instance: str) -> DataplaneInsight:
    return DataplaneInsight((DiscoverySubscription("s", instance, connect_time=1.0),))


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


async def names(store: MemoryStore) -> list[str]:
    return [item.key.name for item in (await store.list("Dataplane")).items]


class EditingStore(MemoryStore):
    """Someone edits ``edited`` right after the collector listed the Dataplanes (once armed)."""

    armed = False

    async def list(self, *args: Any, **kwargs: Any) -> ResourcePage:
        page = await super().list(*args, **kwargs)
        if self.armed:
            self.armed = False
            current = await self.get(ResourceKey("Dataplane", "default", "edited"))
            await self.update(current.resource, version=current.meta.version)
        return page


async def test_only_registrations_without_a_live_stream_for_the_age_are_collected() -> None:
    store = EditingStore()
    await store.create(Mesh(name="default"))
    for name in ("orphan", "connected", "dead-instance", "edited"):
        await store.create(dataplane(name))
    await store.create(dataplane("defined", registered=False))
    insights = {"connected": online("me"), "dead-instance": online("crashed")}
    clock = Clock()
    collector = OrphanCollector(
        store, lambda mesh, name: insights.get(name), "me", age=AGE, clock=clock
    )
    assert await collector.collect() == 0  # first seen without a stream: the age starts now
    clock.now = AGE - 1
    assert await collector.collect() == 0
    clock.now = AGE
    store.armed = True  # compare-and-swap keeps an edit made after the judgement
    assert await collector.collect() == 2
    assert sorted(await names(store)) == ["connected", "defined", "edited"]


async def test_global_collects_no_zones_dataplanes() -> None:
    # On global a zone's registered Dataplane never has a stream of a live global instance
    # (its insight, sent up by the zone, names the zone's instance): only the zone deletes it.
    store = MemoryStore()
    await store.create(Mesh(name="default"))
    await store.create(dataplane("from-zone"))
    clock = Clock()
    collector = OrphanCollector(
        store, lambda mesh, name: online("zone-cp"), "global-1", age=0, clock=clock, enabled=False
    )
    assert await collector.collect() == 0
    assert await names(store) == ["from-zone"]
    collector.enabled = True  # the same Dataplane on a zone-less instance is an orphan
    assert await collector.collect() == 1


async def first_response(port: int) -> Channel:
    """A sidecar registering default.web-orphan through kuma-cp's ADS (left open)."""
    channel = Channel("127.0.0.1", port)
    node = Node(id="default.web-orphan")
    node.metadata.update(
        {"dataplane.resource": orjson.dumps(document("web-orphan", registered=False)).decode()}
    )
    stream = AggregatedDiscoveryServiceStub(channel).DeltaAggregatedResources.open()
    await stream.__aenter__()
    await stream.send_message(DeltaDiscoveryRequest(node=node, type_url=CLUSTER))
    await stream.recv_message()
    return channel


def dp_port(cp: ManagedProcess) -> int:
    line = cp.wait_for_line("kuma-cp is ready", timeout=60)
    match = re.search(r"dp_port=(\d+)", line)
    assert match, line
    return int(match.group(1))


PASS_LINE = "orphan collection pass"


@pytest.mark.etcd
def test_the_survivor_collects_the_orphan_of_a_killed_instance(
    etcd_server: EtcdServer, etcd_prefix: str, tmp_path: Path
) -> None:
    env = {
        **etcd_env(etcd_server, etcd_prefix),
        "KUMA_RUNTIME_UNIVERSAL_DATAPLANE_CLEANUP_AGE": "2s",
        "KUMA_XDS_SERVER_DATAPLANE_STATUS_FLUSH_INTERVAL": "500ms",
        # The sidecar here is a raw plain-text ADS stream without a token (authentication and
        # TLS are not what this test is about: tests/tokens and tests/tls are).
        "KUMA_DP_SERVER_AUTHN_DP_PROXY_TYPE": "none",
        "KUMA_DP_SERVER_TLS_ENABLED": "false",
        "KUMA_LOGGING_LEVEL": "debug",  # the collector's passes, counted below
    }
    doomed, survivor = kuma_cp(None, env=env, cwd=tmp_path), kuma_cp(None, env=env, cwd=tmp_path)
    key = ResourceKey("Dataplane", "default", "web-orphan")

    async def scenario() -> None:
        port = dp_port(doomed)
        dp_port(survivor)
        channel = await first_response(port)
        try:
            async with etcd_store(etcd_server.endpoint, etcd_prefix) as store:
                registered = (await store.get(key)).resource
                assert isinstance(registered, Dataplane)
                assert REGISTRATION_LABEL in registered.labels
                # Connected: the survivor sees its online subscription and keeps it through
                # enough of its own passes (0.5 s apart) to outlast the cleanup age (2 s).
                passes = survivor.count(PASS_LINE)
                with anyio.fail_after(30):
                    while survivor.count(PASS_LINE) < passes + 6:  # noqa: ASYNC110 (a child's output)
                        await anyio.sleep(0.1)
                await store.get(key)
                os.kill(doomed.pid, signal.SIGKILL)
                doomed.wait()
                with anyio.fail_after(40):  # lease TTL (5 s) + age (2 s) + passes
                    while True:
                        try:
                            await store.get(key)
                        except NotFoundError:
                            break
                        await anyio.sleep(0.2)
        finally:
            channel.close()

    try:
        anyio.run(scenario)
        assert survivor.count("deleted a registered Dataplane") == 1
    finally:
        doomed.stop()
        assert survivor.stop() == 0

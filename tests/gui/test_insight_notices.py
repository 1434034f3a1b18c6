"""Two kuma-cp instances on one etcd: a proxy connected to the other instance goes online and
offline live on this instance's GUI, from the shared insight store's change notices."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from kuma.gui import Gui
from kuma.gui.feed import FeedSubscriber
from kuma.insights import Insights, NotifiesInsights, insight_store_for
from kuma.resources import Mesh
from tests.fixtures.etcd import EtcdServer
from tests.store.harness_etcd import dataplane, etcd_store

pytestmark = [pytest.mark.anyio, pytest.mark.etcd]


async def notice_about(page: FeedSubscriber, name: str) -> dict[str, Any]:
    with anyio.fail_after(10):
        while True:
            for notice in await page.next_batch(gather=0):
                if notice.get("kind") == "proxy" and notice.get("name") == name:
                    return notice


async def test_the_other_instances_proxies_are_live(
    etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    async with (
        etcd_store(etcd_server.endpoint, etcd_prefix) as store_a,
        etcd_store(etcd_server.endpoint, etcd_prefix) as store_b,
    ):
        await store_a.create(Mesh(name="default"))
        await store_a.create(dataplane("web-1"))
        a = Insights(insight_store_for(store_a), flush_interval=10, instance_id="cp-a")
        b = Insights(insight_store_for(store_b), flush_interval=10, instance_id="cp-b")
        assert isinstance(b.store, NotifiesInsights)
        gui = Gui(store_b, b)  # the GUI of instance b
        async with anyio.create_task_group() as tg:
            await tg.start(gui.run)
            with gui.feed.subscribe() as page:
                a.tracker.on_stream_open(1, "default.web-1", "delta", "1.40.0")
                await a.flusher.flush_all()
                await notice_about(page, "web-1")
                assert gui.status.online("default", "web-1")

                a.tracker.on_stream_close(1, "default.web-1")
                await a.flusher.flush_all()
                await notice_about(page, "web-1")
                assert not gui.status.online("default", "web-1")
            tg.cancel_scope.cancel()

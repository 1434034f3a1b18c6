"""Zones and zone proxies in the REST API: /zones (PUT, e.g. ``enabled: false``),
/zone-insights (read-only), the overviews at Kuma's paths and legacy paths, /status/zones."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kuma.resources import ZoneInsight
from kuma.resources.zone_insight import KdsSubscription
from kuma.store.memory import MemoryStore

from .helpers import Api, serve
from .test_overview import INSIGHT, FixedInsights

pytestmark = pytest.mark.anyio

CONNECTED = datetime(2026, 12, 4, 7, 0, tzinfo=UTC)
INGRESS = """\
type: ZoneIngress
name: ingress-1
networking:
  address: 10.0.0.1
  port: 10001
  advertisedAddress: 192.0.2.1
  advertisedPort: 10001
"""


async def test_zone_overviews_and_status(api: Api, store: MemoryStore) -> None:
    assert (
        await api.put("/zones/zone-1", "type: Zone\nname: zone-1\nenabled: true\n")
    ).status == 201
    assert (
        await api.put("/zones/zone-2", "type: Zone\nname: zone-2\nenabled: false\n")
    ).status == 201
    online = KdsSubscription(id="s", global_instance_id="g-1", connect_time=CONNECTED)
    for zone in ("zone-1", "zone-2"):
        await store.create(ZoneInsight(name=zone, subscriptions=(online,)))

    for path in ("/zones/_overview", "/zones+insights"):
        listed = (await api.get(path)).json
        assert listed["total"] == 2
        assert listed["next"] is None
        first = listed["items"][0]
        assert first["type"] == "ZoneOverview"
        assert first["name"] == "zone-1"
        assert first["zone"] == {"enabled": True}
        assert first["zoneInsight"]["subscriptions"][0]["globalInstanceId"] == "g-1"
        assert first["zoneInsight"]["subscriptions"][0]["connectTime"] == "2026-12-04T07:00:00Z"
    for path in ("/zones/zone-2/_overview", "/zones+insights/zone-2"):
        assert (await api.get(path)).json["zone"] == {"enabled": False}
    assert (await api.get("/zones/nope/_overview")).status == 404
    # Online and enabled (Kuma's /status/zones).
    assert (await api.get("/status/zones")).json == [
        {"name": "zone-1", "active": True},
        {"name": "zone-2", "active": False},
    ]
    # The insight is the control plane's: readable, never written through the API.
    assert (await api.get("/zone-insights/zone-1")).json["name"] == "zone-1"
    assert (await api.get("/zone-insights")).json["total"] == 2
    assert (
        await api.put("/zone-insights/zone-1", "type: ZoneInsight\nname: zone-1\n")
    ).status == 405
    assert (await api.call("DELETE", "/zone-insights/zone-1")).status == 405


async def test_zone_proxy_overviews_read_the_insights_of_mesh_less_proxies(
    store: MemoryStore,
) -> None:
    # A zone proxy's node id is ``.<name>``: its insight is under the mesh "".
    provider = FixedInsights({("", "ingress-1"): INSIGHT})
    async with serve(store, insights=provider) as api:
        await api.put("/zoneingresses/ingress-1", INGRESS)
        for path in ("/zoneingresses/_overview", "/zoneingresses+insights"):
            (item,) = (await api.get(path)).json["items"]
            assert item["type"] == "ZoneIngressOverview"
            assert item["zoneIngress"]["networking"]["port"] == 10001
            assert item["zoneIngressInsight"] == INSIGHT
        one = (await api.get("/zoneingresses/ingress-1/_overview")).json
        assert one["zoneIngressInsight"] == INSIGHT
        for path in ("/zoneegresses/_overview", "/zoneegressoverviews"):
            assert (await api.get(path)).json == {"total": 0, "items": [], "next": None}

"""``dataplanes+insights``: Kuma's DataplaneOverview from the Dataplane and an injected
insight provider."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from kuma.api import NoInsights
from kuma.store.memory import MemoryStore

from .helpers import Api, dataplane_yaml, error, serve

pytestmark = pytest.mark.anyio

INSIGHT = {
    "subscriptions": [
        {
            "id": "stream-1",
            "controlPlaneInstanceId": "cp-1",
            "connectTime": "2024-01-01T00:00:00Z",
            "status": {"lastUpdateTime": "2024-01-01T00:00:05Z", "total": {"responsesSent": "4"}},
        }
    ]
}


class FixedInsights:
    def __init__(self, insights: Mapping[tuple[str, str], Mapping[str, Any]]) -> None:
        self.insights = insights
        self.asked: list[tuple[str, str]] = []

    def insight(self, mesh: str, name: str) -> Mapping[str, Any] | None:
        self.asked.append((mesh, name))
        return self.insights.get((mesh, name))


async def test_the_default_provider_gives_an_empty_insight(api: Api) -> None:
    assert NoInsights().insight("default", "x") == {}
    await api.put("/meshes/default/dataplanes/web-01", dataplane_yaml("web-01"))
    dataplane = (await api.get("/meshes/default/dataplanes/web-01")).json
    reply = await api.get("/meshes/default/dataplanes+insights")
    assert reply.status == 200
    assert reply.json == {
        "total": 1,
        "items": [
            {
                "type": "DataplaneOverview",
                "mesh": "default",
                "name": "web-01",
                "creationTime": dataplane["creationTime"],
                "modificationTime": dataplane["modificationTime"],
                "dataplane": {"networking": dataplane["networking"]},
                "dataplaneInsight": {},
            }
        ],
        "next": None,
    }


async def test_insights_come_from_the_provider(store: MemoryStore) -> None:
    provider = FixedInsights({("default", "web-01"): INSIGHT})
    async with serve(store, insights=provider) as api:
        await api.put("/meshes/default/dataplanes/web-01", dataplane_yaml("web-01"))
        await api.put("/meshes/default/dataplanes/web-02", dataplane_yaml("web-02"))
        items = (await api.get("/meshes/default/dataplanes+insights")).json["items"]
        assert [i["dataplaneInsight"] for i in items] == [INSIGHT, {}]
        for path in (
            "/meshes/default/dataplanes+insights/web-01",
            "/meshes/default/dataplanes/web-01/_overview",
        ):
            one = (await api.get(path)).json
            assert one["type"] == "DataplaneOverview"
            assert one["dataplaneInsight"] == INSIGHT
        newer = (await api.get("/meshes/default/dataplanes/_overview?size=1")).json
        assert [i["name"] for i in newer["items"]] == ["web-01"]
        assert newer["next"] is not None
    assert ("default", "web-02") in provider.asked


async def test_overview_of_a_missing_dataplane_or_mesh(api: Api) -> None:
    reply = await api.get("/meshes/default/dataplanes+insights/nope")
    assert (reply.status, reply.json) == (
        404,
        error(404, "Could not retrieve a resource", "Not found"),
    )
    missing_mesh = await api.get("/meshes/nope/dataplanes+insights")
    assert missing_mesh.status == 404
    assert missing_mesh.json["title"] == "Failed to retrieve Mesh"

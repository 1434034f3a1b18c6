"""Kuma's overviews of zones and zone proxies (pkg/api-server/resource_endpoints.go, with the
legacy paths kumactl 2.7 still calls), and ``/status/zones`` (pkg/api-server/zones_ws.go).

- ``/zones/_overview`` (``/zones+insights``): each Zone with its ZoneInsight, as Kuma's
  ZoneOverview ``{zone: {enabled}, zoneInsight: {subscriptions}}``; global writes both
  (kuma/kds/zone_status.py).
- ``/zoneingresses/_overview`` (``/zoneingresses+insights``) and ``/zoneegresses/_overview``
  (``/zoneegressoverviews``): each zone proxy with its insight, read from the same insight
  provider as the Dataplanes' under the mesh ``""`` (zone proxies belong to no mesh); ``{}``
  while no stream of that proxy was ever recorded, which kumactl shows as Offline.

Routes are added before the generic ones: ``/zones/{name}`` would take ``_overview`` as a name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from kuma.resources import ResourceKey, StoredResource, Zone, ZoneInsight, to_document
from kuma.store import NotFoundError, Store

from .handlers import (
    ZONE,
    ZONE_EGRESS,
    ZONE_INGRESS,
    Handler,
    Kind,
    _context,
    _get_stored,
    _list_page,
    json_response,
)

_META = ("type", "mesh", "name", "creationTime", "modificationTime")


def _spec(document: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if key not in _META}


async def _zone_insight(store: Store, name: str) -> dict[str, Any]:
    try:
        stored = await store.get(ResourceKey(ZoneInsight.TYPE, "", name))
    except NotFoundError:
        return {}
    return _spec(to_document(stored.resource, stored.meta))


@dataclass(frozen=True)
class Overview:
    kind: Kind
    #: Kuma's overview type and the keys of the resource's spec and of its insight.
    type: str
    spec_key: str
    insight_key: str
    #: Kuma's older paths of the same list (``zones+insights``).
    legacy: str

    async def document(self, stored: StoredResource, request: web.Request) -> dict[str, Any]:
        ctx = _context(request)
        resource = stored.resource
        if isinstance(resource, Zone):
            insight: Any = await _zone_insight(ctx.store, resource.name)
        else:
            insight = dict(ctx.insights.insight("", resource.name) or {})
        own = to_document(resource, stored.meta)
        return {
            "type": self.type,
            "name": own["name"],
            "creationTime": own["creationTime"],
            "modificationTime": own["modificationTime"],
            self.spec_key: _spec(own),
            self.insight_key: insight,
        }

    def one(self) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            stored = await _get_stored(request, self.kind)
            return json_response(await self.document(stored, request))

        return handle

    def page(self) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            items, total, next_link = await _list_page(request, self.kind, all_meshes=False)
            documents = [await self.document(item, request) for item in items]
            return json_response({"total": total, "items": documents, "next": next_link})

        return handle


OVERVIEWS = (
    Overview(ZONE, "ZoneOverview", "zone", "zoneInsight", "zones+insights"),
    Overview(
        ZONE_INGRESS,
        "ZoneIngressOverview",
        "zoneIngress",
        "zoneIngressInsight",
        "zoneingresses+insights",
    ),
    Overview(
        ZONE_EGRESS, "ZoneEgressOverview", "zoneEgress", "zoneEgressInsight", "zoneegressoverviews"
    ),
)


async def zone_status(request: web.Request) -> web.StreamResponse:
    """Kuma's ``/status/zones``: each zone's name and whether it is online and enabled."""
    store = _context(request).store
    zones = await store.list(Zone.TYPE)
    insights = {
        item.resource.name: item.resource for item in (await store.list(ZoneInsight.TYPE)).items
    }
    answer = []
    for item in zones.items:
        zone = item.resource
        assert isinstance(zone, Zone)
        insight = insights.get(zone.name)
        online = isinstance(insight, ZoneInsight) and insight.online
        answer.append({"name": zone.name, "active": online and zone.is_enabled})
    return json_response(answer)


def add_routes(app: web.Application) -> None:
    router = app.router
    for overview in OVERVIEWS:
        plural = overview.kind.plural
        for path in (f"/{plural}/_overview", f"/{overview.legacy}"):
            router.add_get(path, overview.page())
        router.add_get(f"/{plural}/{{name}}/_overview", overview.one())
        router.add_get(f"/{overview.legacy}/{{name}}", overview.one())
    router.add_get("/status/zones", zone_status)

"""The GUI as a kuma-cp component: what the runtime creates, feeds, mounts and runs.

Fed by two kinds of events, never by a timer: the store's (its own watch, through
:class:`~.catalog.GuiCatalog`, and the store's problem notices where it gives them) and the
ADS streams' (:class:`~.streams.StreamWatcher` as a stream observer, and the engine's
propagation measurements through :meth:`Gui.on_propagation`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import anyio
from aiohttp import web
from anyio.abc import TaskStatus

import kuma
from kuma.api import ApiError
from kuma.insights import Insights, NotifiesInsights
from kuma.resources import Dataplane
from kuma.store import NotifiesProblems, Operation, Problem, ResourceEvent, Store

from .assets import load_assets
from .catalog import GuiCatalog
from .feed import LiveFeed
from .propagation import PropagationLog
from .routes import asset_routes, dataplane_filter, json_route, paging, stream_events
from .status import ProxyStatus
from .streams import StreamWatcher
from .views import dataplane_detail, dataplane_page, mesh_summary, policy_list, service_page

#: Never named in the GUI, not even in a notice: only admins may see Secrets (the REST API's rule).
HIDDEN_TYPES = frozenset({"Secret", "GlobalSecret"})


def _problems(store: Store) -> list[dict[str, str]]:
    found: Sequence[Problem] = store.problems()
    return [{"where": p.where, "reason": p.reason} for p in found]


class Gui:
    def __init__(self, store: Store, insights: Insights) -> None:
        self.store = store
        self.instance_id = insights.instance_id
        self.feed = LiveFeed()
        self.catalog = GuiCatalog(on_change=self._on_store_change)
        self.streams = StreamWatcher(self.feed)
        self.status = ProxyStatus(insights, self.streams)
        self._insights = insights
        self.propagation = PropagationLog(self.feed)
        self._assets = load_assets()
        self._last_problems: list[dict[str, str]] = []

    # --- events ---------------------------------------------------------------------------------

    def _on_store_change(self, event: ResourceEvent) -> None:
        key = event.key
        if key.type in HIDDEN_TYPES:
            return
        self.feed.publish(
            {
                "kind": "resource",
                "type": key.type,
                "mesh": key.mesh,
                "name": key.name,
                "operation": event.operation.value,
            }
        )
        if isinstance(event.resource, Dataplane) and event.operation is Operation.DELETE:
            self.streams.forget(key.mesh, key.name)
        self.propagation.on_store_change(event)
        # Stores that do not announce problems: a resource change is a chance to see them.
        self._check_problems()

    def _check_problems(self) -> None:
        problems = _problems(self.store)
        if problems != self._last_problems:
            self._last_problems = problems
            self.feed.publish({"kind": "problems"})

    def _on_insight(self, mesh: str, name: str) -> None:
        # Another instance flushed (or this one's flush came back): its proxy may have gone
        # online or offline there. Pages re-read; nothing is decoded here.
        if self.feed.subscribers:
            self.feed.publish({"kind": "proxy", "mesh": mesh, "name": name})

    def on_propagation(self, node_id: str, seconds: float) -> None:
        """The engine's measurement: ``node_id`` got a change ``seconds`` after it arrived."""
        self.propagation.on_propagation(node_id, seconds)

    # --- running --------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Follow the store until cancelled; started once its snapshot is held. Stopping ends
        every open page's event stream, so the API's shutdown does not wait for them."""
        stop_problems: Callable[[], None] | None = None
        stop_insights: Callable[[], None] | None = None
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(self.catalog.run, self.store)
                self._last_problems = _problems(self.store)
                if isinstance(self.store, NotifiesProblems):
                    stop_problems = self.store.on_problems_changed(self._check_problems)
                if isinstance(self._insights.store, NotifiesInsights):
                    stop_insights = self._insights.store.on_insight_changed(self._on_insight)
                task_status.started()
        finally:
            for stop in (stop_problems, stop_insights):
                if stop is not None:
                    stop()
            self.feed.close()

    # --- documents -------------------------------------------------------------------------------

    def overview(self) -> dict[str, Any]:
        meshes = [mesh_summary(self.catalog, self.status, m) for m in self.catalog.mesh_names()]
        totals = {"meshes": len(meshes), "dataplanes": 0, "online": 0, "offline": 0}
        for mesh in meshes:
            for key in ("online", "offline"):
                totals[key] += mesh["dataplanes"][key]
            totals["dataplanes"] += mesh["dataplanes"]["total"]
        return {
            "controlPlane": {
                "version": kuma.__version__,
                "instanceId": self.instance_id,
                "store": self.store.name,
            },
            "problems": _problems(self.store),
            "meshes": meshes,
            "totals": totals,
            "zones": {
                "ingresses": self.catalog.zone_proxies("ZoneIngress"),
                "egresses": self.catalog.zone_proxies("ZoneEgress"),
            },
        }

    def _mesh_name(self, request: web.Request) -> str:
        mesh = request.match_info["mesh"]
        if self.catalog.mesh(mesh) is None and not self.catalog.dataplanes(mesh):
            raise ApiError(404, "Not Found", f"no mesh {mesh!r}")
        return mesh

    # --- routes ---------------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        async def overview(request: web.Request) -> dict[str, Any]:
            return self.overview()

        async def mesh(request: web.Request) -> dict[str, Any]:
            return mesh_summary(self.catalog, self.status, self._mesh_name(request))

        async def services(request: web.Request) -> dict[str, Any]:
            name = self._mesh_name(request)
            offset, size = paging(request)
            query = request.query.get("name", "").strip()
            return service_page(self.catalog, self.status, name, query, offset, size)

        async def dataplanes(request: web.Request) -> dict[str, Any]:
            name = self._mesh_name(request)
            offset, size = paging(request)
            where = dataplane_filter(request)
            return dataplane_page(self.catalog, self.status, name, where, offset, size)

        async def dataplane(request: web.Request) -> dict[str, Any]:
            mesh, name = request.match_info["mesh"], request.match_info["name"]
            stored = self.catalog.dataplane(mesh, name)
            if stored is None:
                raise ApiError(404, "Not Found", f"no Dataplane {name!r} in mesh {mesh!r}")
            return dataplane_detail(stored, self.status, self.streams.nacks(mesh, name))

        async def policies(request: web.Request) -> dict[str, Any]:
            return policy_list(self.catalog, self._mesh_name(request))

        async def propagation(request: web.Request) -> dict[str, Any]:
            return self.propagation.document()

        async def events(request: web.Request) -> web.StreamResponse:
            with self.feed.subscribe() as subscriber:
                return await stream_events(request, subscriber)

        return [
            json_route("/api/overview", overview),
            json_route("/api/meshes/{mesh}", mesh),
            json_route("/api/meshes/{mesh}/services", services),
            json_route("/api/meshes/{mesh}/policies", policies),
            json_route("/api/meshes/{mesh}/dataplanes", dataplanes),
            json_route("/api/meshes/{mesh}/dataplanes/{name}", dataplane),
            json_route("/api/propagation", propagation),
            web.get("/gui/events", events),
            *asset_routes(self._assets),
        ]

"""The resource endpoints: GET (one, a page), PUT (create or update), DELETE, and the
Dataplane overviews (``dataplanes+insights``). Paths, codes, titles and messages follow
Kuma's ``pkg/api-server/resource_endpoints.go``.

Every write goes through the configured store, which validates again and applies optimistic
concurrency: a PUT reads the current version and updates only that version, so two writers
racing on one resource end with one 200 and one 409, never a lost update.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from kuma.multizone import Authoring
from kuma.resources import (
    Mesh,
    Resource,
    ResourceKey,
    StoredResource,
    ValidationError,
    Violation,
    to_document,
    validate,
)
from kuma.resources.policy import POLICY_KINDS
from kuma.resources.validation.mesh import validate_mesh_update
from kuma.store import ConflictError, NotFoundError, Store

from .access import require_admin
from .body import decode_body, read_body
from .errors import ApiError, conflict, invalid, mesh_not_found, not_found
from .insights import InsightProvider, overview
from .listing import collect, list_query, next_url

log = logging.getLogger("kuma.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Kind:
    """A resource type as the API serves it."""

    type: str
    #: The path segment of its collection (``/meshes/{mesh}/dataplanes``, ``/zoneingresses``).
    plural: str
    mesh_scoped: bool
    #: Only admins may read it, not only write it (Secrets: no other caller ever sees a value).
    admin_only: bool = False
    #: Written by the control plane only (ZoneInsight): no PUT or DELETE route (405).
    read_only: bool = False


MESH = Kind("Mesh", "meshes", mesh_scoped=False)
DATAPLANE = Kind("Dataplane", "dataplanes", mesh_scoped=True)
ZONE_INGRESS = Kind("ZoneIngress", "zoneingresses", mesh_scoped=False)
ZONE_EGRESS = Kind("ZoneEgress", "zoneegresses", mesh_scoped=False)
SECRET = Kind("Secret", "secrets", mesh_scoped=True, admin_only=True)
GLOBAL_SECRET = Kind("GlobalSecret", "global-secrets", mesh_scoped=False, admin_only=True)
EXTERNAL_SERVICE = Kind("ExternalService", "external-services", mesh_scoped=True)
ZONE = Kind("Zone", "zones", mesh_scoped=False)
ZONE_INSIGHT = Kind("ZoneInsight", "zone-insights", mesh_scoped=False, read_only=True)
MESH_GATEWAY = Kind("MeshGateway", "meshgateways", mesh_scoped=True)
# Every targetRef policy kind at Kuma's path: /meshes/{mesh}/meshtimeouts/{name}.
POLICIES = tuple(
    Kind(policy.name, policy.plural, mesh_scoped=True)
    for policy in sorted(POLICY_KINDS.values(), key=lambda p: p.name)
)
KINDS = (
    MESH,
    DATAPLANE,
    ZONE_INGRESS,
    ZONE_EGRESS,
    SECRET,
    GLOBAL_SECRET,
    EXTERNAL_SERVICE,
    ZONE,
    ZONE_INSIGHT,
    MESH_GATEWAY,
    *POLICIES,
)


@dataclass(frozen=True)
class Context:
    store: Store
    insights: InsightProvider
    max_request_bytes: int
    #: Which kinds this control plane authors (global, zone); standalone: all of them.
    authoring: Authoring = field(default_factory=Authoring)


CONTEXT = web.AppKey("kuma.api.context", Context)


def json_response(document: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(document), content_type="application/json")


def _context(request: web.Request) -> Context:
    return request.app[CONTEXT]


async def _mesh_of(request: web.Request, kind: Kind) -> str:
    """The mesh in the path of a mesh-scoped request; 404 when that Mesh does not exist
    (Kuma answers "Failed to retrieve Mesh" before looking at anything else)."""
    if not kind.mesh_scoped:
        return ""
    mesh = request.match_info["mesh"]
    try:
        await _context(request).store.get(ResourceKey(MESH.type, "", mesh))
    except NotFoundError:
        raise not_found("Failed to retrieve Mesh") from None
    return mesh


# --- reads -----------------------------------------------------------------------------------


async def _get_stored(request: web.Request, kind: Kind) -> StoredResource:
    mesh = await _mesh_of(request, kind)
    key = ResourceKey(kind.type, mesh, request.match_info["name"])
    try:
        return await _context(request).store.get(key)
    except NotFoundError:
        raise not_found("Could not retrieve a resource") from None


async def _list_page(
    request: web.Request, kind: Kind, *, all_meshes: bool
) -> tuple[tuple[StoredResource, ...], int, str | None]:
    query = list_query(request, dataplanes=kind is DATAPLANE)
    mesh = None if all_meshes or not kind.mesh_scoped else await _mesh_of(request, kind)
    result = await collect(_context(request).store, kind.type, mesh, query)
    return result.items, result.total, next_url(request, result.next_offset)


def get_one(kind: Kind) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        if kind.admin_only:
            require_admin(request, f"reading a {kind.type}")
        stored = await _get_stored(request, kind)
        return json_response(to_document(stored.resource, stored.meta))

    return handle


def get_list(kind: Kind, *, all_meshes: bool = False) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        if kind.admin_only:
            require_admin(request, f"listing {kind.type}s")
        items, total, next_link = await _list_page(request, kind, all_meshes=all_meshes)
        documents = [to_document(item.resource, item.meta) for item in items]
        return json_response({"total": total, "items": documents, "next": next_link})

    return handle


async def get_overview(request: web.Request) -> web.StreamResponse:
    stored = await _get_stored(request, DATAPLANE)
    return json_response(overview(stored, _context(request).insights))


async def get_overviews(request: web.Request) -> web.StreamResponse:
    items, total, next_link = await _list_page(request, DATAPLANE, all_meshes=False)
    insights = _context(request).insights
    documents = [overview(item, insights) for item in items]
    return json_response({"total": total, "items": documents, "next": next_link})


# --- writes ----------------------------------------------------------------------------------


#: Violations of the resource's meta (``name``, ``mesh``): Kuma reports them with the URL
#: mismatches, the spec's own violations before them.
_META_FIELDS = frozenset({"name", "mesh"})
#: Kuma's title for a body that was read but cannot be stored as it is.
PROCESS_TITLE = "Could not process a resource"


def _url_violations(
    kind: Kind, written_type: object, resource: Resource, name: str, mesh: str
) -> list[tuple[str, str]]:
    """Kuma's validateResourceRequest: the URL and the body must name the same resource."""
    violations: list[tuple[str, str]] = []
    if resource.name != name:
        violations.append(("name", "name from the URL has to be the same as in body"))
    if written_type != kind.type:
        violations.append(("type", "type from the URL has to be the same as in body"))
    if kind.mesh_scoped and resource.mesh_name != mesh:
        violations.append(("mesh", "mesh from the URL has to be the same as in body"))
    return violations


def _request_violations(
    kind: Kind, written_type: object, resource: Resource, name: str, mesh: str
) -> list[Violation | tuple[str, str]]:
    """Every reason to refuse the body, in Kuma's order: the spec's violations alone if there
    are any, else the URL mismatches followed by the name's and the mesh's own."""
    problems = validate(resource)
    spec = [v for v in problems if v.field not in _META_FIELDS]
    if spec:
        return list(spec)
    meta = [v for v in problems if v.field in _META_FIELDS]
    return [*_url_violations(kind, written_type, resource, name, mesh), *meta]


def _check_authored(ctx: Context, kind: Kind, stored: StoredResource | None = None) -> None:
    """Kuma's 405 for a kind another control plane authors, or a ``stored`` copy another
    control plane sent (kuma/multizone/authoring.py)."""
    refusal = ctx.authoring.refusal(kind.type)
    if refusal is None and stored is not None:
        refusal = ctx.authoring.stored_refusal(stored.resource)
    if refusal is not None:
        raise ApiError(405, "Method not Allowed", refusal)


def put(kind: Kind) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        ctx = _context(request)
        _check_authored(ctx, kind)
        name = request.match_info["name"]
        mesh = request.match_info.get("mesh", "")
        body = await read_body(request, ctx.max_request_bytes)
        resource, written_type = decode_body(body, request.content_type, kind.type)
        violations = _request_violations(kind, written_type, resource, name, mesh)
        if violations:
            raise invalid(PROCESS_TITLE, violations)
        key = ResourceKey(kind.type, mesh, name)
        try:
            current: StoredResource | None = await ctx.store.get(key)
        except NotFoundError:
            current = None
        _check_authored(ctx, kind, current)
        title = "Could not create a resource" if current is None else "Could not update a resource"
        try:
            resource = ctx.authoring.admit(resource, create=current is None)
        except ValidationError as exc:
            raise invalid(PROCESS_TITLE, exc.violations) from None
        if current is not None and isinstance(resource, Mesh):
            assert isinstance(current.resource, Mesh)
            changed_ca = validate_mesh_update(current.resource, resource)
            if changed_ca:
                raise invalid(PROCESS_TITLE, changed_ca)
        if kind.mesh_scoped:
            # As in Kuma this is a check, not a lock: a Mesh deleted between this check and the
            # write below leaves the Dataplane without its Mesh (stores have no transactions
            # across two keys) until the Mesh is created again or the Dataplane is deleted.
            try:
                await ctx.store.get(ResourceKey(MESH.type, "", mesh))
            except NotFoundError:
                raise mesh_not_found(title, mesh) from None
        try:
            if current is None:
                await ctx.store.create(resource)
                return web.Response(status=201)
            await ctx.store.update(resource, version=current.meta.version)
        except ValidationError as exc:
            raise invalid(PROCESS_TITLE, exc.violations) from None
        except (ConflictError, NotFoundError) as exc:
            # Another writer created, changed or deleted it since we looked: nothing was
            # written; the caller reads again and decides.
            raise conflict(f"{exc}; it was changed concurrently, retry") from None
        return web.Response(status=200)

    return handle


def delete(kind: Kind) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        title = "Could not delete a resource"
        ctx = _context(request)
        _check_authored(ctx, kind)
        store = ctx.store
        mesh = await _mesh_of(request, kind)
        key = ResourceKey(kind.type, mesh, request.match_info["name"])
        try:
            current = await store.get(key)
        except NotFoundError:
            raise not_found(title) from None
        _check_authored(ctx, kind, current)
        if isinstance(current.resource, Mesh):
            # The same check-then-act as Kuma's (see put): refused while Dataplanes exist.
            attached = await store.list(DATAPLANE.type, key.name, limit=1)
            if attached.total:
                raise invalid(
                    title,
                    [("mesh", "unable to delete mesh, there are still some dataplanes attached")],
                )
        try:
            await store.delete(key, version=current.meta.version)
        except NotFoundError:
            raise not_found(title) from None
        except ConflictError as exc:
            raise conflict(f"{exc}; it was changed concurrently, retry") from None
        return web.Response(status=200)

    return handle


def add_routes(app: web.Application) -> None:
    router = app.router
    # Kuma's legacy overview paths and the newer ``_overview`` ones; registered first, since
    # routes match in order and ``dataplanes/{name}`` would take ``_overview`` as a name.
    router.add_get("/meshes/{mesh}/dataplanes+insights", get_overviews)
    router.add_get("/meshes/{mesh}/dataplanes+insights/{name}", get_overview)
    router.add_get("/meshes/{mesh}/dataplanes/_overview", get_overviews)
    router.add_get("/meshes/{mesh}/dataplanes/{name}/_overview", get_overview)
    for kind in KINDS:
        collection = f"/meshes/{{mesh}}/{kind.plural}" if kind.mesh_scoped else f"/{kind.plural}"
        router.add_get(collection, get_list(kind))
        router.add_get(collection + "/{name}", get_one(kind))
        if kind.read_only:
            continue
        router.add_put(collection + "/{name}", put(kind))
        router.add_delete(collection + "/{name}", delete(kind))
    router.add_get("/dataplanes", get_list(DATAPLANE, all_meshes=True))

"""``GET /meshes/{mesh}/dataplanes/{name}/_rules`` (Kuma's inspect endpoint): which policies
apply to a Dataplane and what they merge into, computed from the store."""

from __future__ import annotations

from typing import Any, TypeVar

from aiohttp import web

from kuma.policies.inspect import rules_document
from kuma.resources import Dataplane, MeshGateway, ResourceKey
from kuma.resources.model import Gateway, Networking, Policy
from kuma.resources.policy import POLICY_KINDS
from kuma.store import NotFoundError, Store
from kuma.xds.gateway.selection import select_gateway

from .errors import not_found
from .handlers import CONTEXT, json_response

T = TypeVar("T")


async def _all(store: Store, type_name: str, mesh: str) -> list[Policy]:
    return await _all_of(store, Policy, type_name, mesh)


async def get_rules(request: web.Request) -> web.StreamResponse:
    store = request.app[CONTEXT].store
    mesh = request.match_info["mesh"]
    name = request.match_info["name"]
    dataplane = await _in_mesh(store, "Dataplane", mesh, name)
    assert isinstance(dataplane, Dataplane)
    policies = {kind: await _all(store, kind, mesh) for kind in sorted(POLICY_KINDS)}
    gateway = None
    if dataplane.networking is not None and dataplane.networking.gateway is not None:
        # A builtin gateway: the policies select the listeners of the MeshGateway it serves.
        gateways = await _all_of(store, MeshGateway, "MeshGateway", mesh)
        gateway = select_gateway(gateways, dataplane)
    return json_response(rules_document(dataplane, policies, gateway))


async def _in_mesh(store: Store, type_name: str, mesh: str, name: str) -> Any:
    """A resource of ``mesh``, with Kuma's 404 messages for a missing Mesh or resource."""
    try:
        await store.get(ResourceKey("Mesh", "", mesh))
    except NotFoundError:
        raise not_found("Failed to retrieve Mesh") from None
    try:
        stored = await store.get(ResourceKey(type_name, mesh, name))
    except NotFoundError:
        raise not_found(f"Could not retrieve {type_name}") from None
    return stored.resource


async def _all_of(store: Store, cls: type[T], type_name: str, mesh: str) -> list[T]:
    found: list[T] = []
    offset: str | None = None
    while True:
        page = await store.list(type_name, mesh, limit=1000, offset=offset)
        found.extend(item.resource for item in page.items if isinstance(item.resource, cls))
        offset = page.next_offset
        if offset is None:
            return found


async def get_gateway_rules(request: web.Request) -> web.StreamResponse:
    """``GET /meshes/{mesh}/meshgateways/{name}/_rules``: as Kuma, the rules of a builtin
    gateway Dataplane carrying the tags of the MeshGateway's first selector."""
    store = request.app[CONTEXT].store
    mesh = request.match_info["mesh"]
    name = request.match_info["name"]
    gateway = await _in_mesh(store, "MeshGateway", mesh, name)
    assert isinstance(gateway, MeshGateway)
    tags = dict(gateway.selectors[0].match) if gateway.selectors else {}
    dataplane = Dataplane(
        name=name,
        mesh=mesh,
        networking=Networking(gateway=Gateway(tags=tags, type="BUILTIN")),
    )
    policies = {kind: await _all(store, kind, mesh) for kind in sorted(POLICY_KINDS)}
    selected = select_gateway(await _all_of(store, MeshGateway, "MeshGateway", mesh), dataplane)
    document = rules_document(dataplane, policies, selected, ("MeshGateway", name))
    return json_response(document)

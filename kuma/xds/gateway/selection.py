"""Which MeshGateway serves which builtin gateway Dataplane, and the selection key that
re-assembles the proxies a MeshGateway serves (engine handlers and assembly share these)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING

from kuma.resources import Dataplane, MeshGateway

if TYPE_CHECKING:
    from kuma.xds.engine.mesh_state import MeshState


def gateway_key(mesh: str, name: str) -> Hashable:
    """The selection key of a MeshGateway: the proxies it serves."""
    return ("MeshGateway", mesh, name)


def _selects(gateway: MeshGateway, tags: Mapping[str, str]) -> bool:
    return any(
        all(tags.get(k) == v or (v == "*" and k in tags) for k, v in selector.match.items())
        for selector in gateway.selectors or ()
    )


def gateway_of(dataplane: Dataplane, mesh: MeshState) -> MeshGateway | None:
    """The MeshGateway a builtin gateway Dataplane serves: one whose selectors match its
    gateway tags (the first by name when several do)."""
    networking = dataplane.networking
    if networking is None or networking.gateway is None or networking.gateway.type != "BUILTIN":
        return None
    tags = networking.gateway.tags
    matching = [g for g in mesh.gateways.values() if _selects(g, tags)]
    return min(matching, key=lambda g: g.name) if matching else None


def served_by(gateway: MeshGateway, mesh: MeshState) -> list[str]:
    """The builtin gateway Dataplanes whose tags a MeshGateway's selectors match."""
    names: dict[str, None] = {}
    for selector in gateway.selectors or ():
        exact = [(k, v) for k, v in selector.match.items() if v != "*"]
        for name in mesh.with_tags(exact):
            dataplane = mesh.dataplanes[name]
            gw = dataplane.networking.gateway if dataplane.networking is not None else None
            if gw is not None and gw.type == "BUILTIN" and _selects(gateway, gw.tags):
                names[name] = None
    return list(names)

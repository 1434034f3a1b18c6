"""Which MeshGateway serves which builtin gateway Dataplane, and the selection key that
re-assembles the proxies a MeshGateway serves (engine handlers and assembly share these)."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import TYPE_CHECKING

from kuma.resources import Dataplane, MeshGateway

if TYPE_CHECKING:
    from kuma.xds.engine.mesh_state import MeshState


def gateway_key(mesh: str, name: str) -> Hashable:
    """The selection key of a MeshGateway: the proxies it serves."""
    return ("MeshGateway", mesh, name)


def secret_key(mesh: str, name: str) -> Hashable:
    """The selection key of a mesh Secret: the gateway proxies whose certificates read it."""
    return ("Secret", mesh, name)


def _rank(gateway: MeshGateway, tags: Mapping[str, str]) -> tuple[int, int] | None:
    """Kuma's TagSelectorRank of the best selector matching ``tags`` (exact values, then
    ``*`` values); None when none matches."""
    best: tuple[int, int] | None = None
    for selector in gateway.selectors or ():
        match = selector.match
        if all(tags.get(k) == v or (v == "*" and k in tags) for k, v in match.items()):
            wildcards = sum(1 for v in match.values() if v == "*")
            rank = (len(match) - wildcards, wildcards)
            best = rank if best is None else max(best, rank)
    return best


def _selects(gateway: MeshGateway, tags: Mapping[str, str]) -> bool:
    return _rank(gateway, tags) is not None


def gateway_of(dataplane: Dataplane, mesh: MeshState) -> MeshGateway | None:
    """The MeshGateway a builtin gateway Dataplane serves, among the mesh's."""
    return select_gateway(mesh.gateways.values(), dataplane)


def select_gateway(gateways: Iterable[MeshGateway], dataplane: Dataplane) -> MeshGateway | None:
    """Kuma's SelectGateway: the MeshGateway whose matching selector ranks highest; on a tie
    the first by name (Kuma: the one created last, a time the engine does not keep)."""
    networking = dataplane.networking
    if networking is None or networking.gateway is None or networking.gateway.type != "BUILTIN":
        return None
    tags = networking.gateway.tags
    best: tuple[tuple[int, int], MeshGateway] | None = None
    for gateway in sorted(gateways, key=lambda g: g.name):
        rank = _rank(gateway, tags)
        if rank is not None and (best is None or rank > best[0]):
            best = (rank, gateway)
    return None if best is None else best[1]


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

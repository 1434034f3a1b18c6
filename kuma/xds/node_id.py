"""A proxy's node id: ``<mesh>.<name>``, the one format shared by the servers, the engine,
registration and insights.

Kuma's convention: the mesh is everything before the first dot (mesh names hold no dot), the
Dataplane name is the rest and may contain dots. A zone proxy (ZoneIngress) belongs to no mesh:
its node id is ``.<name>`` (:func:`parse_proxy_id` accepts it, :func:`parse_node_id` does not).
"""

from __future__ import annotations

from typing import NamedTuple


class InvalidNodeId(ValueError):
    """A node id that is not ``<mesh>.<name>``."""


class ProxyId(NamedTuple):
    mesh: str
    name: str

    def __str__(self) -> str:
        return format_node_id(self.mesh, self.name)


def format_node_id(mesh: str, name: str) -> str:
    return f"{mesh}.{name}"


def parse_node_id(node_id: str) -> ProxyId:
    """Split ``<mesh>.<name>`` at the first dot; both parts must be non-empty."""
    mesh, dot, name = node_id.partition(".")
    if not dot or not mesh or not name:
        raise InvalidNodeId(
            f"node id {node_id!r} is not '<mesh>.<name>' (the mesh, a dot, the Dataplane name)"
        )
    return ProxyId(mesh, name)


def parse_proxy_id(node_id: str) -> ProxyId:
    """:func:`parse_node_id`, also accepting a zone proxy's ``.<name>`` (mesh ``""``)."""
    if node_id.startswith(".") and len(node_id) > 1:
        return ProxyId("", node_id[1:])
    return parse_node_id(node_id)

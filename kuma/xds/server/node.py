"""Who is on the other end of a stream, and the one error a bad request earns.

A proxy names itself in ``node.id`` as ``<mesh>.<name>`` (Kuma's convention: the mesh is
everything before the first dot, the Dataplane name may contain dots). ``node`` is only
guaranteed on the first request of a stream, so the stream keeps what it read there.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class InvalidRequest(ValueError):
    """A request that breaks the protocol: that stream ends with INVALID_ARGUMENT, no other."""


class ProxyId(NamedTuple):
    mesh: str
    name: str

    def __str__(self) -> str:
        return f"{self.mesh}.{self.name}"


def parse_node_id(node_id: str) -> ProxyId:
    """Split ``<mesh>.<name>`` at the first dot; both parts must be non-empty."""
    mesh, dot, name = node_id.partition(".")
    if not dot or not mesh or not name:
        raise InvalidRequest(
            f"node.id {node_id!r} is not '<mesh>.<name>' (the mesh, a dot, the Dataplane name)"
        )
    return ProxyId(mesh, name)


def first_node_id(node: Any) -> str:
    """The node id of a stream's first request (an ``envoy.config.core.v3.Node``)."""
    node_id: str = node.id
    if not node_id:
        raise InvalidRequest("the first request of a stream must carry node.id")
    return node_id


def envoy_version(node: Any) -> str:
    """``major.minor.patch`` of the client's build, or its free-form version, or ``""``."""
    if node.HasField("user_agent_build_version"):
        v = node.user_agent_build_version.version
        return f"{v.major_number}.{v.minor_number}.{v.patch}"
    return str(node.user_agent_version)

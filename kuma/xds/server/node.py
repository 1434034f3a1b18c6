"""Who is on the other end of a stream, and the one error a bad request earns.

A proxy names itself in ``node.id`` as ``<mesh>.<name>`` (:mod:`kuma.xds.node_id`). ``node`` is
only guaranteed on the first request of a stream, so the stream keeps what it read there.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.json_format import (  # type: ignore[import-untyped, unused-ignore]
    MessageToDict,
)

from kuma.xds.node_id import InvalidNodeId, ProxyId, parse_node_id, parse_proxy_id

__all__ = [
    "InvalidNodeId",
    "InvalidRequest",
    "ProxyId",
    "envoy_version",
    "first_node_id",
    "node_version",
    "parse_node_id",
    "parse_proxy_id",
]


class InvalidRequest(ValueError):
    """A request that breaks the protocol: that stream ends with INVALID_ARGUMENT, no other."""


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


#: The parts of Kuma's ``Version`` and their fields.
_VERSION_FIELDS = {
    "kumaDp": ("version", "gitTag", "gitCommit", "buildDate"),
    "envoy": ("version", "build"),
}


def node_version(node: Any) -> dict[str, dict[str, str]]:
    """Kuma's ``Version`` of a proxy: ``{"kumaDp": {...}, "envoy": {"version", "build"}}``.

    kuma-dp puts it in the node metadata under ``version``; what it leaves out of Envoy's part
    comes from the node's own build version, with ``build`` in ``envoy --version``'s form
    (``<sha>/<version>/<status>/<type>/<ssl>``).
    """
    declared: Any = {}
    if node.HasField("metadata") and "version" in node.metadata.fields:
        declared = MessageToDict(node.metadata.fields["version"])
    version: dict[str, dict[str, str]] = {}
    for part, fields in _VERSION_FIELDS.items():
        given = declared.get(part) if isinstance(declared, dict) else None
        given = given if isinstance(given, dict) else {}
        version[part] = {f: str(given[f]) if f in given else "" for f in fields}
    envoy = version["envoy"]
    if not envoy["version"]:
        envoy["version"] = envoy_version(node)
    if not envoy["build"] and node.HasField("user_agent_build_version"):
        meta = MessageToDict(node.user_agent_build_version.metadata)
        parts = [
            meta.get("revision.sha"),
            envoy_version(node),
            meta.get("revision.status"),
            meta.get("build.type"),
            meta.get("ssl.version"),
        ]
        if all(isinstance(p, str) and p for p in parts):
            envoy["build"] = "/".join(str(p) for p in parts)
    return version

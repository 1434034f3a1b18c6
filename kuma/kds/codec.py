"""How one resource travels on KDS between our own control planes.

Each resource is a ``google.protobuf.Any`` whose ``type_url`` names its kind
(``kuma-py.kds/Mesh``) and whose ``value`` is the canonical JSON of the resource (type, mesh,
name, labels and spec; never the store's meta): keys sorted, no spaces, so equal resources
give equal bytes and the version, a hash of those bytes, says whether anything changed.
Integers travel as JSON integers and come back exactly (orjson: 64-bit, no float detour).

Kuma packs its protobuf spec messages instead; we do not have Kuma's specs, so only our own
control planes speak this (docs/architecture.md, "KDS").

The name on the wire is ``<mesh>/<name>`` for mesh-scoped kinds and ``<name>`` otherwise, so
one delta stream per kind can name every resource of that kind uniquely.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from kuma import jsonbytes
from kuma.resources import DecodeError, Resource, ResourceKey, ValidationError
from kuma.resources.codec import from_document, to_document
from kuma.resources.model import RESOURCE_TYPES
from kuma.xds.snapshot import VersionedResource, content_version

TYPE_PREFIX = "kuma-py.kds/"


class KdsDecodeError(ValueError):
    """A resource on the wire that is not a valid resource of the kind it claims to be."""


def type_url(kind: str) -> str:
    return TYPE_PREFIX + kind


def kind_of(url: str) -> str:
    """The kind a type URL names; KdsDecodeError for a URL that is not ours."""
    kind = url.removeprefix(TYPE_PREFIX)
    if kind == url or kind not in RESOURCE_TYPES:
        raise KdsDecodeError(f"type_url {url[:200]!r} names no resource kind")
    return kind


def type_urls(kinds: Iterable[str]) -> tuple[str, ...]:
    return tuple(type_url(kind) for kind in kinds)


def wire_name(key: ResourceKey) -> str:
    return f"{key.mesh}/{key.name}" if key.mesh else key.name


def key_of(url: str, name: str) -> ResourceKey:
    """The store key a wire name stands for (removals carry only the name)."""
    kind = kind_of(url)
    if RESOURCE_TYPES[kind].MESH_SCOPED:
        mesh, sep, plain = name.partition("/")
        if not sep or not mesh or not plain:
            raise KdsDecodeError(f"{name[:200]!r}: a {kind} is named <mesh>/<name> on KDS")
        return ResourceKey(kind, mesh, plain)
    return ResourceKey(kind, "", name)


def canonical(resource: Resource) -> bytes:
    """The resource's canonical JSON (keys sorted): what travels, and what two copies of a
    resource are compared by."""
    return orjson.dumps(to_document(resource), option=orjson.OPT_SORT_KEYS)


def encode(resource: Resource) -> VersionedResource:
    # Kept as the body of the resource offered over KDS: exact-size bytes (kuma/jsonbytes.py).
    body = jsonbytes.exact(canonical(resource))
    return VersionedResource(
        type_url=type_url(resource.TYPE),
        name=wire_name(ResourceKey.of(resource)),
        version=content_version(body),
        body=body,
    )


def decode(url: str, name: str, body: bytes) -> Resource:
    """The resource ``body`` holds; KdsDecodeError (naming it) unless it is a valid resource
    of the kind ``url`` names, under the wire name ``name``."""
    kind = kind_of(url)
    try:
        resource = from_document(orjson.loads(body))
    except (orjson.JSONDecodeError, DecodeError, ValidationError) as exc:
        raise KdsDecodeError(f"{kind} {name[:200]!r}: {exc}") from None
    if kind != resource.TYPE:
        raise KdsDecodeError(f"{name[:200]!r}: a {resource.TYPE} sent as a {kind}")
    if wire_name(ResourceKey.of(resource)) != name:
        raise KdsDecodeError(f"{name[:200]!r}: the resource inside is named otherwise")
    return resource

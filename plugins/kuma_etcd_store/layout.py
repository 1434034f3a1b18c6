"""Where resources live in etcd and how they are written there.

Keys: ``<prefix>/<type>/<mesh>/<name>`` for mesh-scoped resources (Dataplane) and
``<prefix>/<type>/<name>`` for global ones (Mesh, ZoneIngress, ZoneEgress). Values: the
resource's JSON document as Kuma prints it, with ``creationTime`` and ``modificationTime`` (etcd
keeps no timestamps of its own). The version of a resource is the key's ``mod_revision``.

Anyone with etcdctl can write under the prefix, so reading is defensive: a key or value that
is not a valid resource raises :class:`InvalidEntry` with a reason, never anything else.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from kuma.resources import (
    RESOURCE_TYPES,
    DecodeError,
    Resource,
    ResourceKey,
    ResourceMeta,
    StoredResource,
    ValidationError,
    from_document,
    to_document,
)
from kuma.resources.validation import check


class InvalidEntry(Exception):
    """A key under the prefix that does not hold a valid resource; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class KeyLayout:
    def __init__(self, prefix: str) -> None:
        #: Everything this store owns starts with ``root`` (the prefix and a slash).
        self.root = prefix.rstrip("/").encode() + b"/"

    def key(self, key: ResourceKey) -> bytes:
        if key.mesh:
            return self.root + f"{key.type}/{key.mesh}/{key.name}".encode()
        return self.root + f"{key.type}/{key.name}".encode()

    def of(self, resource: Resource) -> bytes:
        return self.key(ResourceKey.of(resource))

    def range_prefix(self, type: str | None = None, mesh: str | None = None) -> bytes:
        """The prefix of every key (of ``type``, in ``mesh`` when given)."""
        if type is None:
            return self.root
        if mesh is None or not RESOURCE_TYPES[type].MESH_SCOPED:
            return self.root + f"{type}/".encode()
        return self.root + f"{type}/{mesh}/".encode()

    def parse(self, key: bytes) -> ResourceKey:
        """The resource key that ``key`` stands for; InvalidEntry when it is not one of ours."""
        if not key.startswith(self.root):
            raise InvalidEntry("key is outside the store's prefix")
        try:
            parts = key[len(self.root) :].decode().split("/")
        except UnicodeDecodeError:
            raise InvalidEntry("key is not UTF-8") from None
        cls = RESOURCE_TYPES.get(parts[0])
        if cls is None:
            raise InvalidEntry(
                f"unknown resource type {parts[0]!r} in key; expected one of "
                + ", ".join(sorted(RESOURCE_TYPES))
            )
        expected = 3 if cls.MESH_SCOPED else 2
        shape = f"{parts[0]}/<mesh>/<name>" if cls.MESH_SCOPED else f"{parts[0]}/<name>"
        if len(parts) != expected or not all(parts):
            raise InvalidEntry(f"key does not have the form <prefix>/{shape}")
        if cls.MESH_SCOPED:
            return ResourceKey(parts[0], parts[1], parts[2])
        return ResourceKey(parts[0], "", parts[1])


def encode_value(resource: Resource, created: datetime, modified: datetime) -> bytes:
    # to_document only reads the times of the meta; the version is etcd's to give.
    return orjson.dumps(to_document(resource, ResourceMeta("", created, modified)))


_UNKNOWN_TIME = datetime(1970, 1, 1, tzinfo=UTC)


def _time(doc: dict[str, Any], field: str) -> datetime:
    raw = doc.get(field)
    if raw is None:
        return _UNKNOWN_TIME
    if not isinstance(raw, str):
        raise InvalidEntry(f"{field}: expected an RFC 3339 time, got {raw!r}")
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidEntry(f"{field}: {raw!r} is not an RFC 3339 time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def decode_value(key: ResourceKey, value: bytes, mod_revision: int) -> StoredResource:
    """The stored resource held by ``value`` at ``key``; InvalidEntry when it is not valid."""
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidEntry(f"value is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidEntry(f"value is a JSON {type(doc).__name__}, not an object")
    created, modified = _time(doc, "creationTime"), _time(doc, "modificationTime")
    try:
        resource = from_document(doc)
        check(resource)
    except (DecodeError, ValidationError) as exc:
        raise InvalidEntry(str(exc)) from None
    if ResourceKey.of(resource) != key:
        raise InvalidEntry(f"value holds {ResourceKey.of(resource)}, not {key}")
    return StoredResource(resource, ResourceMeta(str(mod_revision), created, modified))

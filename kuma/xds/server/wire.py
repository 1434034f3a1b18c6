"""A ``DeltaDiscoveryResponse`` written straight to its wire bytes.

In a fan-out every connected proxy is sent the same shared resource: building a ``Resource``
and an ``Any`` around its body, then a response message, then serializing it all again cost
about 6 µs per proxy (upb copies the body into each message it builds). The bytes are the
concatenation of length-delimited fields, so they are written here directly from the engine's
serialized body, and the ``Resource`` part of a resource is kept for the next proxies that are
sent the same one. The bytes equal upb's serialization of the same message
(tests/xds/test_server_wire.py): fields in number order, empty strings left out.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from kuma.xds.snapshot import VersionedResource

# Field keys (field number << 3 | 2, length-delimited), one byte each.
_ANY_TYPE_URL = b"\x0a"  # google.protobuf.Any.type_url = 1
_ANY_VALUE = b"\x12"  # google.protobuf.Any.value = 2
_RESOURCE_VERSION = b"\x0a"  # Resource.version = 1
_RESOURCE_ANY = b"\x12"  # Resource.resource = 2
_RESOURCE_NAME = b"\x1a"  # Resource.name = 3
_RESPONSE_RESOURCES = b"\x12"  # DeltaDiscoveryResponse.resources = 2
_RESPONSE_TYPE_URL = b"\x22"  # DeltaDiscoveryResponse.type_url = 4
_RESPONSE_NONCE = b"\x2a"  # DeltaDiscoveryResponse.nonce = 5
_RESPONSE_REMOVED = b"\x32"  # DeltaDiscoveryResponse.removed_resources = 6

#: How many resources' encodings are kept: the shared ones of a change being fanned out (a
#: change is sent to every proxy before the next one usually comes). Small, so a proxy's own
#: resources (sent once) do not stay in memory twice.
_KEPT = 64


def _varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(key: bytes, payload: bytes) -> bytes:
    """A length-delimited field; nothing for an empty string (proto3 leaves it out)."""
    if not payload:
        return b""
    return key + _varint(len(payload)) + payload


def _submessage(key: bytes, payload: bytes) -> bytes:
    """A set message field or an element of a repeated one: present even when empty."""
    return key + _varint(len(payload)) + payload


class _ResourceCache:
    """The ``resources`` field of recently sent resources, by resource (equal content, equal
    bytes), least recently used dropped first."""

    __slots__ = ("_kept",)

    def __init__(self) -> None:
        self._kept: OrderedDict[VersionedResource, bytes] = OrderedDict()

    def field(self, resource: VersionedResource) -> bytes:
        kept = self._kept
        encoded = kept.get(resource)
        if encoded is not None:
            kept.move_to_end(resource)
            return encoded
        packed = _field(_ANY_TYPE_URL, resource.type_url.encode()) + _field(
            _ANY_VALUE, resource.body
        )
        body = (
            _field(_RESOURCE_VERSION, resource.version.encode())
            + _submessage(_RESOURCE_ANY, packed)
            + _field(_RESOURCE_NAME, resource.name.encode())
        )
        encoded = kept[resource] = _submessage(_RESPONSE_RESOURCES, body)
        if len(kept) > _KEPT:
            kept.popitem(last=False)
        return encoded


_resources = _ResourceCache()


class WireResponse:
    """A delta response ready for the transport: its bytes (what ``SerializeToString`` gives
    grpclib's codec) and what the stream's observers read."""

    __slots__ = ("_data", "nonce", "resource_count", "type_url")

    def __init__(self, type_url: str, nonce: str, resource_count: int, data: bytes) -> None:
        self.type_url = type_url
        self.nonce = nonce
        #: Resources carried (removals excluded).
        self.resource_count = resource_count
        self._data = data

    # The protobuf name: grpclib's codec calls it.
    def SerializeToString(self) -> bytes:
        return self._data


def wire_response(
    type_url: str, nonce: str, send: Sequence[VersionedResource], removed: Sequence[str]
) -> WireResponse:
    """The response carrying ``send`` whole and ``removed`` by name; the resources' bodies are
    packed as they are (each is a resource of ``type_url``)."""
    field = _resources.field
    parts = [field(resource) for resource in send]
    type_field = _type_fields.get(type_url)
    if type_field is None:
        type_field = _type_fields[type_url] = _field(_RESPONSE_TYPE_URL, type_url.encode())
    parts.append(type_field)
    parts.append(_field(_RESPONSE_NONCE, nonce.encode()))
    # Every element of a repeated field is written, even an empty one.
    parts.extend(_submessage(_RESPONSE_REMOVED, name.encode()) for name in removed)
    return WireResponse(type_url, nonce, len(send), b"".join(parts))


#: The ``type_url`` field of each type's responses (a handful of types).
_type_fields: dict[str, bytes] = {}

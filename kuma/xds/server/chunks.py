"""Splitting one type's delta response so that no message exceeds a size limit (KDS's
``maxMsgSize``: a zone's thousands of Dataplanes going up at its first connection would
otherwise be one message per type, as in Kuma, whose gRPC limit then ends the stream).

Delta xDS allows several responses of one type in a row, each with its own nonce and each
ACKed on its own, so the receiver applies them one after another. Removals ride in the last
one. A single resource larger than the limit cannot travel at all: it is left out (and
reported), everything else still goes.
"""

from __future__ import annotations

from typing import NamedTuple

from envoy.service.discovery.v3.discovery_pb2 import Resource

#: Room for the type URL, the nonce and the fields' tags, beyond the resources themselves.
_FRAME = 64


class Split(NamedTuple):
    #: (resources, removed names) of each response, in order (at least one).
    parts: list[tuple[list[Resource], list[str]]]
    #: (name, encoded size) of the resources too large for any response.
    oversized: list[tuple[str, int]]


def _field_size(payload: int) -> int:
    """A length-delimited field's size on the wire: tag, length varint, payload."""
    return 1 + max(1, (payload.bit_length() + 6) // 7) + payload


def split(type_url: str, resources: list[Resource], removed: list[str], limit: int) -> Split:
    """``resources`` and ``removed`` of ``type_url`` in responses of at most ``limit`` bytes."""
    budget = limit - _FRAME - _field_size(len(type_url.encode()))
    parts: list[tuple[list[Resource], list[str]]] = []
    oversized: list[tuple[str, int]] = []
    current: list[Resource] = []
    used = 0
    for resource in resources:
        size = _field_size(resource.ByteSize())
        if size > budget:
            oversized.append((resource.name, size))
            continue
        if used + size > budget:
            parts.append((current, []))
            current, used = [], 0
        current.append(resource)
        used += size
    gone: list[str] = []
    for name in removed:
        size = _field_size(len(name.encode()))
        if used + size > budget and (current or gone):
            parts.append((current, gone))
            current, gone, used = [], [], 0
        gone.append(name)
        used += size
    parts.append((current, gone))
    return Split(parts, oversized)

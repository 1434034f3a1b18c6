"""Kuma's protocol rules: parsing the ``kuma.io/protocol`` tag and the common protocol of a
service's endpoints (``pkg/util/protocol/protocol.go`` and ``inferServiceProtocol`` in
``pkg/xds/context/mesh_context_builder.go`` of Kuma v2.7).

Each protocol has a stack, from the most specific to the least: grpc → http2 → tcp,
http → tcp, http2 → tcp, kafka → tcp, tcp. The common protocol of two is the most specific
protocol both stacks share, so http + http2 is **tcp** (not http2: neither stack holds the
other), grpc + http2 is http2, anything + tcp is tcp. A missing or unknown tag is "unknown",
which absorbs everything; this module reports it as ``tcp`` because Kuma builds the same
resources for both. The rule is commutative and associative, so the order of the endpoints
does not matter.
"""

from __future__ import annotations

from collections.abc import Iterable

TCP = "tcp"
HTTP = "http"
HTTP2 = "http2"
GRPC = "grpc"
KAFKA = "kafka"
#: The protocols whose listeners are HTTP connection managers.
HTTP_PROTOCOLS = frozenset({HTTP, HTTP2, GRPC})

_UNKNOWN = ""
_STACKS: dict[str, tuple[str, ...]] = {
    GRPC: (GRPC, HTTP2, TCP),
    HTTP2: (HTTP2, TCP),
    HTTP: (HTTP, TCP),
    KAFKA: (KAFKA, TCP),
    TCP: (TCP,),
}


def parse_protocol(tag: str | None) -> str:
    """The protocol named by a ``kuma.io/protocol`` tag value (case-insensitive), or ``""``
    for a missing or unknown value."""
    if not tag:
        return _UNKNOWN
    value = tag.lower()
    return value if value in _STACKS else _UNKNOWN


def common_protocol(one: str, another: str) -> str:
    """Kuma's ``GetCommonProtocol`` over parsed protocols (``""`` is unknown)."""
    if one == another:
        return one
    if not one or not another:
        return _UNKNOWN
    other_stack = _STACKS[another]
    for candidate in _STACKS[one]:
        if candidate in other_stack:
            return candidate
    return _UNKNOWN  # unreachable: every stack ends in tcp


def infer_protocol(protocols: Iterable[str | None]) -> str:
    """The protocol of a service from the ``kuma.io/protocol`` tag values of its endpoints.

    Returns one of ``tcp``, ``http``, ``http2``, ``grpc``, ``kafka``; no endpoints, an
    untagged endpoint or an unknown value give ``tcp``.
    """
    result: str | None = None
    for tag in protocols:
        parsed = parse_protocol(tag)
        result = parsed if result is None else common_protocol(result, parsed)
        if not result:
            return TCP
    return result or TCP

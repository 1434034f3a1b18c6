"""Nonces and the ACK/NACK part of requests, shared by both protocol flavours.

A request that carries ``response_nonce`` answers the response with that nonce: it is a NACK
if and only if ``error_detail`` is set, an ACK otherwise. Only the first answer to a nonce this
stream issued counts; any other nonce (never sent, already answered, or dropped from the
outstanding window) makes the reply *stale*: reported as such, never as an ACK or NACK (a
state-of-the-world request that changes its names repeats the last nonce: stale too). Versions
are never used to guess.
Delivery is not inferred from ACKs either: the protocol state machines record what they send
when they send it, so an ACK that arrives late (or refers to a response made stale by a later
cluster update, consul#19866) changes nothing; ACKs and NACKs are reported, not relied upon.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from kuma.xds.types import SEND_ORDER

from .node import InvalidRequest

KNOWN_TYPES: frozenset[str] = frozenset(SEND_ORDER)

#: Envoy answers every response promptly, so only a handful are ever outstanding. The cap only
#: bounds memory against a client that never answers; the oldest records are dropped first.
_MAX_OUTSTANDING = 64


def check_type_url(type_url: str, known: frozenset[str] = KNOWN_TYPES) -> None:
    if not type_url:
        raise InvalidRequest("type_url is required on every ADS request")
    if type_url not in known:
        raise InvalidRequest(f"unknown type_url {type_url!r}")


class Reply(NamedTuple):
    """The ACK or NACK part of a request (a tuple: one is made per ACK, on every proxy of a
    fan-out, and a frozen dataclass took three times as long to make)."""

    type_url: str
    nonce: str
    #: The names the answered response carried (resources, then removals); empty if unknown.
    names: tuple[str, ...]
    #: Envoy's message for a NACK; ``None`` for an ACK.
    error: str | None
    #: The nonce is not one this stream sent and has not yet seen answered (forged, answered
    #: twice, or older than the outstanding window): it counts as neither ACK nor NACK.
    stale: bool = False

    @property
    def is_nack(self) -> bool:
        return self.error is not None


class Nonces:
    """Issues nonces unique on one stream and matches replies to the responses they answer."""

    __slots__ = ("_counter", "_outstanding")

    def __init__(self) -> None:
        self._counter = 0
        self._outstanding: dict[str, tuple[str, tuple[str, ...]]] = {}

    def issue(self, type_url: str, names: tuple[str, ...]) -> str:
        self._counter += 1
        nonce = format(self._counter, "x")
        outstanding = self._outstanding
        if len(outstanding) >= _MAX_OUTSTANDING:
            del outstanding[next(iter(outstanding))]
        outstanding[nonce] = (type_url, names)
        return nonce

    def reply(self, request: Any) -> Reply | None:
        """The ACK/NACK in ``request`` (either flavour), or ``None`` if it answers nothing."""
        nonce: str = request.response_nonce
        if not nonce:
            return None
        record = self._outstanding.pop(nonce, None)
        error = str(request.error_detail.message) if request.HasField("error_detail") else None
        if record is None:
            return Reply(request.type_url, nonce, (), error, stale=True)
        return Reply(request.type_url, nonce, record[1], error)

    @property
    def outstanding(self) -> int:
        return len(self._outstanding)

"""What an ADS stream takes in from its client: each request read and decoded
(:func:`receive_request`), and let through only for the types this server serves
(:class:`TypeFilter`).
"""

from __future__ import annotations

import logging
from typing import Any

from google.protobuf.message import DecodeError  # type: ignore[import-untyped, unused-ignore]

from .acks import KNOWN_TYPES
from .direct_receive import receive_message
from .node import InvalidRequest
from .observer import Flavour
from .service import ServerStream

log = logging.getLogger(__name__)


class TypeFilter:
    """Lets through requests of the types this server serves (and those without a type, for
    the state machines to refuse); logs the first other one of the stream at info, the rest
    at debug, so a proxy asking for a type it will never get costs one line per stream."""

    __slots__ = ("_flavour", "_logged", "_node_id")

    def __init__(self, flavour: Flavour, node_id: str) -> None:
        self._flavour = flavour
        self._node_id = node_id
        self._logged = False

    def served(self, request: Any) -> bool:
        type_url: str = request.type_url
        if not type_url or type_url in KNOWN_TYPES:
            return True
        level = logging.DEBUG if self._logged else logging.INFO
        self._logged = True
        log.log(
            level,
            "unknown type %s requested on the %s ADS stream of %s: answered with nothing "
            "(logged once per stream)",
            type_url[:200],
            self._flavour,
            self._node_id,
        )
        return False


async def receive_request(stream: ServerStream) -> Any:
    try:
        return await receive_message(stream)
    except DecodeError as error:
        raise InvalidRequest(f"undecodable request: {error}") from None

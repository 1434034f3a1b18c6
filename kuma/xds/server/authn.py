"""The authentication seam of an ADS stream.

The stream calls :meth:`StreamAuthenticator.authenticate` with what the first request and the
gRPC call carry, before anything is registered or sent. A refusal is :class:`Unauthenticated`
(the stream then ends with UNAUTHENTICATED); an acceptance is a :class:`StreamGrant`, which the
stream holds for its lifetime: when the grant ends (its token expired or was revoked, its key
was deleted) the stream is closed with UNAUTHENTICATED and the grant's reason. What a credential
is and how it is checked is the authenticator's business (kuma/tokens/authenticator.py); the
stream only knows this protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import anyio


class Unauthenticated(Exception):
    """The stream is refused; ``reason`` names why and never holds a credential."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class StreamGrant(Protocol):
    async def wait_ended(self) -> str:
        """Block until the grant ends; the reason (the stream is then closed)."""
        ...

    def on_end(self, callback: Callable[[str], None]) -> None:
        """Have ``callback(reason)`` called once when the grant ends (at once if it has
        ended; never if it does not). Costs no task, where ``wait_ended`` needs one: an ADS
        stream per proxy uses this."""
        ...

    def release(self) -> None:
        """The stream is over: forget the grant."""
        ...


class StreamAuthenticator(Protocol):
    async def authenticate(
        self, node_id: str, node: Any, metadata: Mapping[str, str | bytes]
    ) -> StreamGrant:
        """Check the stream's credential (``metadata``: the call's gRPC metadata, binary
        values as bytes) against the proxy it claims to be (``node``: the first request's
        node). Raises Unauthenticated."""
        ...


class _Forever:
    async def wait_ended(self) -> str:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    def on_end(self, callback: Callable[[str], None]) -> None:
        pass

    def release(self) -> None:
        pass


FOREVER: StreamGrant = _Forever()


class NoAuthentication:
    """Every stream is accepted (``dpServer.authn.dpProxy.type: none``)."""

    async def authenticate(
        self, node_id: str, node: Any, metadata: Mapping[str, str | bytes]
    ) -> StreamGrant:
        return FOREVER

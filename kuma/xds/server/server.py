"""The ADS server: both protocol flavours over grpclib, and a function that serves them."""

from __future__ import annotations

import itertools
import logging
from ssl import SSLContext

import anyio
from anyio.abc import TaskStatus
from grpclib.server import Server

from kuma.xds.source import ConfigSource

from .admission import Admission
from .authn import StreamAuthenticator
from .compact import compact_stream
from .delta import DeltaProtocol
from .demux import ProtocolFactory, SharedPortServer
from .lifecycle import StreamLifecycle
from .listener import listening
from .observer import Flavour, NoopObserver, StreamObserver
from .service import AggregatedDiscoveryServiceBase, ServerStream
from .session import ProtocolState
from .sotw import SotwProtocol
from .stream import run_stream
from .waiting import MAX_WAITING_PER_CONNECTION, WaitingObserver, WaitingStreams

log = logging.getLogger(__name__)


class AdsServer(AggregatedDiscoveryServiceBase):
    """grpclib handlers for delta and state-of-the-world ADS, fed by a :class:`ConfigSource`."""

    def __init__(
        self,
        source: ConfigSource,
        observer: StreamObserver | None = None,
        lifecycle: StreamLifecycle | None = None,
        *,
        waiting_per_connection: int = MAX_WAITING_PER_CONNECTION,
        authenticator: StreamAuthenticator | None = None,
        admission: Admission | None = None,
    ) -> None:
        self._source = source
        self._admission = admission
        self._authenticator = authenticator
        self._observer: StreamObserver = observer if observer is not None else NoopObserver()
        self._lifecycle = lifecycle
        self.waiting = WaitingStreams(
            observer if isinstance(observer, WaitingObserver) else None,
            per_connection=waiting_per_connection,
        )
        self._stream_ids = itertools.count(1)

    def _settled(self, stream: ServerStream) -> None:
        """The stream's connection is set up: its admission place goes to the next one."""
        if self._admission is not None:
            self._admission.settled(stream.peer.addr())

    async def DeltaAggregatedResources(self, stream: ServerStream) -> None:
        await self._run(stream, DeltaProtocol(wire=True), "delta")

    async def StreamAggregatedResources(self, stream: ServerStream) -> None:
        await self._run(stream, SotwProtocol(), "sotw")

    async def _run(self, stream: ServerStream, state: ProtocolState, flavour: Flavour) -> None:
        compact_stream(stream)
        try:
            await run_stream(
                stream,
                state,
                flavour=flavour,
                source=self._source,
                observer=self._observer,
                stream_id=next(self._stream_ids),
                lifecycle=self._lifecycle,
                waiting=self.waiting,
                authenticator=self._authenticator,
                settled=self._settled,
            )
        finally:
            # A stream refused or ended before its proxy was assembled: its place too.
            self._settled(stream)


async def serve(
    source: ConfigSource,
    host: str,
    port: int,
    observer: StreamObserver | None = None,
    *,
    lifecycle: StreamLifecycle | None = None,
    authenticator: StreamAuthenticator | None = None,
    http1: ProtocolFactory | None = None,
    ssl: SSLContext | None = None,
    admission: Admission | None = None,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ADS on ``host:port`` until cancelled; ``task_status.started`` gets the bound port.

    Port 0 picks a free port. On cancellation the listener closes, every open stream is
    cancelled, and this returns once they have all ended. With ``http1``, connections that do
    not open with the HTTP/2 preface go to that protocol factory instead (:mod:`.demux`).
    With ``ssl`` every connection is TLS first; the demultiplexing then reads the decrypted
    bytes, so ADS and ``/bootstrap`` still share the port. The shared port admits new
    connections through ``admission`` (:mod:`.admission`; by default its own, with the
    default limit), so that a storm of them is served in arrival order.
    """
    if http1 is not None and admission is None:
        admission = Admission()
    handlers = [
        AdsServer(source, observer, lifecycle, authenticator=authenticator, admission=admission)
    ]
    if http1 is None:
        server, asyncio_tls = Server(handlers), ssl
    else:
        server, asyncio_tls = SharedPortServer(handlers, http1, tls=ssl, admission=admission), None
    encrypted = ssl is not None
    async with listening(
        server, host, port, asyncio_tls, what="ADS server", encrypted=encrypted
    ) as bound_port:
        task_status.started(bound_port)
        await anyio.sleep_forever()

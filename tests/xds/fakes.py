"""Test doubles for the ADS server: a ConfigSource the test drives, an observer that records,
and xDS clients that check the protocol's invariants on every response they receive."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.core.v3.base_pb2 import Node
from envoy.config.endpoint.v3.endpoint_pb2 import ClusterLoadAssignment
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.route.v3.route_pb2 import RouteConfiguration
from envoy.service.discovery.v3.discovery_pb2 import (
    DeltaDiscoveryRequest,
    DiscoveryRequest,
)
from google.rpc.status_pb2 import Status as StatusPb  # type: ignore[import-untyped, unused-ignore]
from grpclib.client import Channel, Stream
from grpclib.exceptions import GRPCError
from grpclib.testing import ChannelFor

from kuma.xds.composite import CompositeSource
from kuma.xds.generate.types import CLUSTER, ENDPOINT, LISTENER, ROUTE
from kuma.xds.proxy_metadata import ProxyMetadata
from kuma.xds.server import AdsServer, AggregatedDiscoveryServiceStub
from kuma.xds.snapshot import VersionedResource, versioned
from kuma.xds.source import ConfigSource
from kuma.xds.wakeup import Waitable

#: Every wait in these tests is bounded: a protocol bug fails fast instead of hanging.
DEADLINE = 5.0

NODE = "default.web-1"


def resource(type_url: str, name: str, rev: int = 0) -> VersionedResource:
    """A real, small message of each type; ``rev`` changes its content (and so its version)."""
    message: Any
    if type_url == CLUSTER:
        message = Cluster(name=name)
        message.connect_timeout.seconds = 1 + rev
    elif type_url == ENDPOINT:
        message = ClusterLoadAssignment(cluster_name=name)
        message.policy.overprovisioning_factor.value = 100 + rev
    elif type_url == LISTENER:
        message = Listener(name=name, stat_prefix=f"rev{rev}")
    elif type_url == ROUTE:
        message = RouteConfiguration(name=name, max_direct_response_body_size_bytes={"value": rev})
    else:  # pragma: no cover - the tests use the four above
        raise ValueError(type_url)
    return versioned(type_url, name, message)


class FakeWatch(Waitable):
    """A :class:`kuma.xds.source.ProxyWatch` over a :class:`FakeProxy`; listenable, as the
    engine's, so that in a :class:`~kuma.xds.composite.CompositeSource` (``ads_channel``) the
    streams take the send steps kuma-cp's take (kuma/xds/server/session.py)."""

    def __init__(self, proxy: FakeProxy) -> None:
        super().__init__()
        self._proxy = proxy
        self._changes: dict[str, set[str]] = {}

    @property
    def node_id(self) -> str:
        return self._proxy.node_id

    @property
    def known(self) -> bool:
        return self._proxy.known

    def resources(self, type_url: str) -> Mapping[str, VersionedResource]:
        return self._proxy.state.get(type_url, {})

    def take_changes(self) -> dict[str, set[str]]:
        changes, self._changes = self._changes, {}
        return changes

    @property
    def has_changes(self) -> bool:
        return bool(self._changes)

    def mark(self, type_url: str, names: Iterable[str]) -> None:
        self._changes.setdefault(type_url, set()).update(names)
        if self._changes:
            self._changed()


class RacedWatch:
    """A :class:`FakeWatch` without a listener (no ``set_listener``, no ``has_changes``): a
    :class:`~kuma.xds.composite.CompositeWatch` races a waiter on it instead."""

    def __init__(self, inner: FakeWatch) -> None:
        self._inner = inner

    @property
    def node_id(self) -> str:
        return self._inner.node_id

    @property
    def known(self) -> bool:
        return self._inner.known

    def resources(self, type_url: str) -> Mapping[str, VersionedResource]:
        return self._inner.resources(type_url)

    def take_changes(self) -> dict[str, set[str]]:
        return self._inner.take_changes()

    async def wait_for_changes(self) -> None:
        await self._inner.wait_for_changes()

    def poke(self) -> None:
        self._inner.poke()


@dataclass
class FakeProxy:
    node_id: str
    known: bool = False
    state: dict[str, dict[str, VersionedResource]] = field(default_factory=dict)
    watches: list[FakeWatch] = field(default_factory=list)

    def put(self, type_url: str, name: str, rev: int = 0) -> VersionedResource:
        item = resource(type_url, name, rev)
        self.state.setdefault(type_url, {})[name] = item
        self._notify(type_url, [name])
        return item

    def remove(self, type_url: str, name: str) -> None:
        del self.state[type_url][name]
        self._notify(type_url, [name])

    def make_known(self) -> None:
        """The Dataplane appears: like the engine, report every resource as changed."""
        self.known = True
        for type_url, items in self.state.items():
            self._notify(type_url, list(items))

    def make_unknown(self) -> None:
        """The Dataplane is deleted: like the engine, every resource is gone and changed."""
        self.known = False
        state, self.state = self.state, {}
        for type_url, items in state.items():
            self._notify(type_url, list(items))

    def _notify(self, type_url: str, names: list[str]) -> None:
        for watch in self.watches:
            watch.mark(type_url, names)


class FakeSource:
    """A :class:`kuma.xds.source.ConfigSource` whose per-proxy state the test sets directly."""

    def __init__(self, *, listenable: bool = True) -> None:
        """``listenable``: its watches tell a composite of their changes (as the engine's),
        else a composite races a waiter on each (:class:`RacedWatch`)."""
        self.listenable = listenable
        self.proxies: dict[str, FakeProxy] = {}
        self.opened: list[str] = []
        #: The metadata each opened watch was given, by node id (the latest).
        self.metadata: dict[str, ProxyMetadata | None] = {}
        self._opened_event = anyio.Event()

    def proxy(self, node_id: str = NODE, *, known: bool = True) -> FakeProxy:
        proxy = self.proxies.get(node_id)
        if proxy is None:
            proxy = self.proxies[node_id] = FakeProxy(node_id, known)
        return proxy

    @asynccontextmanager
    async def watch_proxy(
        self, node_id: str, metadata: ProxyMetadata | None = None
    ) -> AsyncIterator[FakeWatch | RacedWatch]:
        proxy = self.proxy(node_id, known=False)
        watch = FakeWatch(proxy)
        proxy.watches.append(watch)
        self.opened.append(node_id)
        self.metadata[node_id] = metadata
        self._opened_event.set()
        self._opened_event = anyio.Event()
        try:
            yield watch if self.listenable else RacedWatch(watch)
        finally:
            proxy.watches.remove(watch)

    async def wait_opened(self, node_id: str) -> None:
        with anyio.fail_after(DEADLINE):
            while node_id not in self.opened:
                await self._opened_event.wait()


@dataclass
class RecordingObserver:
    """A :class:`kuma.xds.server.StreamObserver` that keeps every call, in order."""

    events: list[tuple[Any, ...]] = field(default_factory=list)
    _changed: anyio.Event = field(default_factory=anyio.Event)

    def _record(self, *event: Any) -> None:
        self.events.append(event)
        self._changed.set()
        self._changed = anyio.Event()

    def on_stream_open(self, stream_id: int, node_id: str, protocol: str, version: str) -> None:
        self._record("open", stream_id, node_id, protocol, version)

    def on_response(self, node_id: str, type_url: str, resource_count: int, nonce: str) -> None:
        self._record("response", node_id, type_url, resource_count, nonce)

    def on_ack(self, node_id: str, type_url: str, nonce: str) -> None:
        self._record("ack", node_id, type_url, nonce)

    def on_nack(self, node_id: str, type_url: str, nonce: str, message: str) -> None:
        self._record("nack", node_id, type_url, nonce, message)

    def on_stale_reply(self, node_id: str, type_url: str, nonce: str) -> None:
        self._record("stale", node_id, type_url, nonce)

    def on_waiting_streams(self, count: int) -> None:
        self._record("waiting", count)

    def on_stream_close(self, stream_id: int, node_id: str) -> None:
        self._record("close", stream_id, node_id)

    async def wait_for(self, predicate: Callable[[tuple[Any, ...]], bool]) -> tuple[Any, ...]:
        """The first recorded event matching ``predicate``, waiting for it if need be."""
        with anyio.fail_after(DEADLINE):
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                await self._changed.wait()

    def of_kind(self, kind: str) -> list[tuple[Any, ...]]:
        return [event for event in self.events if event[0] == kind]


def node(node_id: str) -> Any:
    built = Node(id=node_id, user_agent_name="envoy")
    version = built.user_agent_build_version.version
    version.major_number, version.minor_number, version.patch = 1, 40, 0
    return built


class _Client:
    """Checks, on every response, what must hold on any stream: nonces unique on the stream,
    no name twice in a response, every packed resource of the response's type."""

    stream: Stream[Any, Any]

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.nonces: set[str] = set()
        #: The stream has ended (closed by us, or ended by the server with an error).
        self.finished = False
        self.error: GRPCError | None = None
        self._first = True
        #: Node metadata sent with the first request (what kuma-dp's bootstrap puts there).
        self.node_metadata: dict[str, Any] = {}

    def _node(self) -> Any:
        # node only on the first request, as Envoy does: the server must keep it.
        if self._first:
            self._first = False
            built = node(self.node_id)
            if self.node_metadata:
                built.metadata.update(self.node_metadata)
            return built
        return None

    async def _recv(self) -> Any:
        with anyio.fail_after(DEADLINE):
            response = await self.stream.recv_message()
        assert response is not None, "the server ended the stream"
        assert response.nonce, "a response without a nonce"
        assert response.nonce not in self.nonces, f"nonce {response.nonce} repeated"
        self.nonces.add(response.nonce)
        return response

    async def close(self) -> None:
        """End the client side; the server must end the stream with OK."""
        with anyio.fail_after(DEADLINE):
            await self.stream.end()
            assert await self.stream.recv_message() is None
        self.finished = True

    async def drain(self) -> None:
        """Read until the server ends the stream; its error status lands in ``error``.

        Call it last in the stream's context: grpclib resets a stream after error trailers, so
        a read may see only the reset (StreamTerminatedError), which the stream's context
        exit turns into the GRPCError of the trailers (kept by ``_open``).
        """
        self.finished = True
        with anyio.fail_after(DEADLINE):
            try:
                while await self.stream.recv_message() is not None:
                    pass
                # grpclib reads the trailers only once our side has ended too.
                await self.stream.end()
                await self.stream.recv_trailing_metadata()
            except GRPCError as error:
                self.error = error


class DeltaClient(_Client):
    async def send(
        self,
        type_url: str,
        subscribe: Iterable[str] = (),
        unsubscribe: Iterable[str] = (),
        *,
        initial: Mapping[str, str] | None = None,
        nonce: str = "",
        error: str | None = None,
    ) -> None:
        request = DeltaDiscoveryRequest(
            node=self._node(),
            type_url=type_url,
            resource_names_subscribe=list(subscribe),
            resource_names_unsubscribe=list(unsubscribe),
            initial_resource_versions=dict(initial or {}),
            response_nonce=nonce,
        )
        if error is not None:
            request.error_detail.CopyFrom(StatusPb(code=3, message=error))
        await self.stream.send_message(request)

    async def recv(self) -> Any:
        response = await self._recv()
        names = [r.name for r in response.resources] + list(response.removed_resources)
        assert len(names) == len(set(names)), f"a name repeated in one response: {names}"
        for item in response.resources:
            assert item.resource.type_url == response.type_url
            assert item.version
        return response

    async def ack(self, response: Any) -> None:
        await self.send(response.type_url, nonce=response.nonce)

    async def nack(self, response: Any, message: str) -> None:
        await self.send(response.type_url, nonce=response.nonce, error=message)


class SotwClient(_Client):
    async def send(
        self,
        type_url: str,
        names: Iterable[str] = (),
        *,
        version: str = "",
        nonce: str = "",
        error: str | None = None,
    ) -> None:
        request = DiscoveryRequest(
            node=self._node(),
            type_url=type_url,
            resource_names=list(names),
            version_info=version,
            response_nonce=nonce,
        )
        if error is not None:
            request.error_detail.CopyFrom(StatusPb(code=3, message=error))
        await self.stream.send_message(request)

    async def recv(self) -> Any:
        response = await self._recv()
        assert response.version_info
        for item in response.resources:
            assert item.type_url == response.type_url
        return response


_C = TypeVar("_C", bound=_Client)


def delta_state(response: Any) -> dict[str, str | None]:
    """name -> version for what a delta response sends, ``None`` for what it removes."""
    state: dict[str, str | None] = {r.name: r.version for r in response.resources}
    state.update(dict.fromkeys(response.removed_resources))
    return state


@asynccontextmanager
async def ads_channel(
    source: ConfigSource, observer: RecordingObserver | None = None, *, composite: bool = True
) -> AsyncIterator[Channel]:
    """An in-memory channel to an ADS server of ``source``; behind a
    :class:`~kuma.xds.composite.CompositeSource` as in kuma-cp unless ``composite`` is False
    (then every change wakes the send loop's task)."""
    served = source
    if composite and not isinstance(source, CompositeSource):
        served = CompositeSource(source, {})
    async with ChannelFor([AdsServer(served, observer)]) as channel:
        yield channel


@asynccontextmanager
async def delta_stream(channel: Channel, node_id: str = NODE) -> AsyncIterator[DeltaClient]:
    stub = AggregatedDiscoveryServiceStub(channel)
    async with _open(stub.DeltaAggregatedResources.open(), DeltaClient(node_id)) as client:
        yield client


@asynccontextmanager
async def sotw_stream(channel: Channel, node_id: str = NODE) -> AsyncIterator[SotwClient]:
    stub = AggregatedDiscoveryServiceStub(channel)
    async with _open(stub.StreamAggregatedResources.open(), SotwClient(node_id)) as client:
        yield client


@asynccontextmanager
async def _open(stream: Stream[Any, Any], client: _C) -> AsyncIterator[_C]:
    try:
        async with stream:
            await stream.send_request()
            client.stream = stream
            try:
                yield client
            finally:
                if not client.finished:
                    await stream.cancel()
    except GRPCError as error:
        if not client.finished:
            raise
        client.error = error

"""One :class:`~kuma.xds.source.ConfigSource` made of several, each owning some type URLs.

In the spirit of go-control-plane's ``MuxCache``: a stream asks one source; this one opens a
watch on every member for the proxy, reads each type from the member that owns it, and merges
their change sets. The primary source (the engine) owns every type not routed elsewhere and
decides whether the proxy is ``known``; e.g. SDS secrets come from a
:class:`~kuma.xds.secrets.SecretSource`, fed by certificate issuing and rotation (not store
events), without the engine or the servers knowing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import cast

import anyio

from .proxy_metadata import ProxyMetadata
from .snapshot import VersionedResource
from .source import Changes, ConfigSource, ListenableWatch, ProxyWatch
from .wakeup import Wakeup
from .watch_context import enter, exit_all


class CompositeSource:
    def __init__(
        self,
        primary: ConfigSource,
        routes: Mapping[str, ConfigSource],
        shared: Iterable[str] = (),
    ) -> None:
        """``routes``: type URL → the source that owns it; the rest belong to ``primary``.
        ``shared``: routed types the primary may add names to, derived from store events (a
        builtin gateway's certificates beside the SecretSource's Secrets); the two never
        serve the same name (``cert.*`` vs ``identity_cert:``/``mesh_ca:``)."""
        if any(source is primary for source in routes.values()):
            raise ValueError("route a type URL to the primary source by leaving it out")
        self._primary = primary
        self._shared = frozenset(shared) & frozenset(routes)
        #: The types the primary has no say in, one set for every proxy's watch.
        self._routed = frozenset(routes) - self._shared
        #: Each routed source once, with the type URLs it owns.
        self._members: list[tuple[ConfigSource, frozenset[str]]] = []
        for source in {id(s): s for s in routes.values()}.values():
            owned = frozenset(t for t, s in routes.items() if s is source)
            self._members.append((source, owned))

    def watch_proxy(
        self, node_id: str, metadata: ProxyMetadata | None = None
    ) -> AbstractAsyncContextManager[ProxyWatch]:
        return _CompositeContext(self, node_id, metadata)


class _CompositeContext:
    """:meth:`CompositeSource.watch_proxy`: the primary's and each member's watch entered in
    order and left in reverse (:mod:`.watch_context`: an exit stack per stream was ~1.5 KB)."""

    __slots__ = ("_entered", "_metadata", "_node_id", "_source", "_watch")

    def __init__(self, source: CompositeSource, node_id: str, metadata: ProxyMetadata | None):
        self._source = source
        self._node_id = node_id
        self._metadata = metadata
        self._entered: tuple[AbstractAsyncContextManager[ProxyWatch], ...] = ()
        self._watch: CompositeWatch | None = None

    async def __aenter__(self) -> CompositeWatch:
        source, node_id, metadata = self._source, self._node_id, self._metadata
        entered: list[AbstractAsyncContextManager[ProxyWatch]] = []
        try:
            primary = await enter(source._primary.watch_proxy(node_id, metadata), entered)
            members = [
                (await enter(member.watch_proxy(node_id, metadata), entered), owned)
                for member, owned in source._members
            ]
        except BaseException as error:
            await exit_all(entered, error)
            raise
        self._entered = tuple(entered)
        watch = self._watch = CompositeWatch(primary, source._routed, members, source._shared)
        return watch

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        watch, self._watch = self._watch, None
        entered, self._entered = self._entered, ()
        if watch is None:
            return False
        try:
            watch.close()
        except BaseException as error:
            await exit_all(entered, error)  # the members are left all the same
            raise
        return await exit_all(entered, exc)


#: Whether each watch class is a :class:`ListenableWatch`. isinstance on a runtime-checkable
#: Protocol looks every member up on the instance (evaluating ``has_changes``), some 10 µs a
#: check; a stream's opening made eight of them (benchmarks/RESULTS.md, convergence profile).
#: The members are methods and a property, so the answer is the class's.
_LISTENABLE: dict[type, bool] = {}


def _as_listenable(watch: ProxyWatch) -> ListenableWatch | None:
    listenable = _LISTENABLE.get(type(watch))
    if listenable is None:
        listenable = _LISTENABLE[type(watch)] = isinstance(watch, ListenableWatch)
    return cast(ListenableWatch, watch) if listenable else None


class CompositeWatch:
    """A :class:`~kuma.xds.source.ProxyWatch` reading each type from the watch that owns it."""

    def __init__(
        self,
        primary: ProxyWatch,
        routed: frozenset[str],
        members: list[tuple[ProxyWatch, frozenset[str]]],
        shared: frozenset[str] = frozenset(),
    ) -> None:
        """``routed``: the types the primary has no say in; ``shared``: routed types the
        primary adds names to."""
        self._primary = primary
        self._routed = routed
        self._shared = shared
        self._members = members
        self._by_type = {t: watch for watch, owned in members for t in owned}
        self._all = [primary, *(watch for watch, _ in members)]
        self._listenable = [w for w in map(_as_listenable, self._all) if w is not None]
        self._wakeup = Wakeup()
        self._interceptor: Callable[[], None] | None = None
        # One wake-up for all the watches when they all support it, else one task per watch.
        self._listening = len(self._listenable) == len(self._all)
        if self._listening:
            for w in self._listenable:
                w.set_listener(self._member_changed)

    def intercept(self, interceptor: Callable[[], None] | None) -> bool:
        """Have ``interceptor`` hear each change instead of the waiting task (None: the task
        again). The interceptor does the waiter's work itself or calls :meth:`notify`. False,
        and nothing set, when the members cannot tell of their changes (:meth:`_race`)."""
        if not self._listening:
            return False
        self._interceptor = interceptor
        return True

    def notify(self) -> None:
        """Wake the waiting task to look at the changes (what a change does unintercepted)."""
        self._wakeup.notify()

    def _member_changed(self) -> None:
        interceptor = self._interceptor
        if interceptor is not None:
            interceptor()
        else:
            self._wakeup.notify()

    def close(self) -> None:
        self._interceptor = None
        if self._listening:
            for w in self._listenable:
                w.set_listener(None)

    @property
    def node_id(self) -> str:
        return self._primary.node_id

    @property
    def known(self) -> bool:
        return self._primary.known

    def resources(self, type_url: str) -> Mapping[str, VersionedResource]:
        found = self._by_type.get(type_url, self._primary).resources(type_url)
        if type_url in self._shared:
            own = self._primary.resources(type_url)
            if own:
                return {**found, **own}
        return found

    def take_changes(self) -> Changes:
        taken = self._primary.take_changes()
        # The primary's own change set, handed over (it keeps none of it), unless it is not one.
        merged = taken if isinstance(taken, Changes) else Changes(taken)
        if merged and self._routed:
            for type_url in self._routed.intersection(merged):
                del merged[type_url]  # not the primary's to say
        for watch, owned in self._members:
            taken = watch.take_changes()
            if not taken:
                continue
            for type_url, names in taken.items():
                if type_url in owned:
                    merged.setdefault(type_url, set()).update(names)
            since = taken.since if isinstance(taken, Changes) else None
            if since is not None and (merged.since is None or since < merged.since):
                merged.since = since
        return merged

    @property
    def has_changes(self) -> bool:
        return self._has_changes()

    def _has_changes(self) -> bool:
        return any(watch.has_changes for watch in self._listenable)

    async def wait_for_changes(self) -> None:
        if self._listening:
            await self._wakeup.wait_until(self._has_changes)
        else:
            await self._race()

    def poke(self) -> None:
        self._wakeup.poke()

    async def _race(self) -> None:
        async def wait_one(wait: Callable[[], Awaitable[None]], scope: anyio.CancelScope) -> None:
            await wait()
            scope.cancel()

        async with anyio.create_task_group() as tg:
            for watch in self._all:
                tg.start_soon(wait_one, watch.wait_for_changes, tg.cancel_scope)
            # A poke ends the race too (the stream has work of its own).
            tg.start_soon(wait_one, self._wakeup.wait_for_poke, tg.cancel_scope)

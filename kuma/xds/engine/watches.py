"""The watched proxies of a config source: per-proxy records, and each stream's watch.

:class:`ProxyWatches` keeps one :class:`ProxyRecord` per proxy that has at least one open
watch (memory follows connections) and calls its owner when the first watch of a proxy opens
and when the last one closes. :meth:`ProxyRecord.publish` replaces a proxy's desired resources
and tells its watches what changed, with when the oldest input behind the change arrived (the
propagation stamp travels with the change notice). The engine and kuma-load's baseline are
both built on these.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from types import MappingProxyType

from kuma.policies.locality_aware import LocalityShape
from kuma.xds.generate.destination import Destination
from kuma.xds.node_id import parse_proxy_id
from kuma.xds.proxy_metadata import NO_METADATA, ProxyMetadata
from kuma.xds.snapshot import VersionedResource
from kuma.xds.source import Changes
from kuma.xds.wakeup import Waitable
from kuma.xds.watch_context import WatchContext

from .proxy_memo import ProxyMemo

#: type URL → name → resource: what one proxy should hold.
ProxyResources = dict[str, dict[str, VersionedResource]]

_EMPTY: Mapping[str, VersionedResource] = {}
_NO_SUBSETS: Mapping[str, tuple[Destination, ...]] = MappingProxyType({})
_NO_LOCALITIES: Mapping[str, LocalityShape] = MappingProxyType({})


class ProxyRecord:
    """One watched proxy: its desired resources and who watches it."""

    __slots__ = (
        "localities",
        "memo",
        "mesh",
        "metadata",
        "name",
        "node_id",
        "outbound_services",
        "resources",
        "selections",
        "subscribers",
        "subsets",
    )

    def __init__(self, node_id: str, mesh: str, name: str) -> None:
        self.node_id = node_id
        self.mesh = mesh
        self.name = name
        #: None until the proxy's Dataplane exists.
        self.resources: ProxyResources | None = None
        #: Kept by :class:`~.proxy_index.ProxyIndex` (``set_consumed``, ``set_selections``):
        #: tuples, not sets (a frozenset of 5-8 items is 728 bytes, a tuple ~100; only the
        #: index compares them, once per assembly).
        self.outbound_services: tuple[str, ...] = ()
        self.selections: tuple[Hashable, ...] = ()
        self.subscribers: list[Subscription] = []
        #: The destinations of each service it reaches through a subset (the engine's
        #: ``Assembly.subsets``: where a service's endpoints are patched).
        self.subsets: Mapping[str, tuple[Destination, ...]] = _NO_SUBSETS
        #: Service → the locality shape its CLAs are rewritten with for this proxy (the
        #: engine's ``Assembly.localities``: which CLA variant a service's patch takes).
        self.localities: Mapping[str, LocalityShape] = _NO_LOCALITIES
        #: What the node of its latest stream said (kuma-dp's DNS and readiness ports).
        self.metadata = NO_METADATA
        #: Its inbound listeners and clusters as last assembled (``proxy_memo.py``).
        self.memo = ProxyMemo()

    def publish(self, resources: ProxyResources | None, since: float | None = None) -> bool:
        """Replace the desired resources (None: the proxy's Dataplane is gone) and notify the
        watches of what differs; True if anything did. ``since``: when (``time.monotonic``)
        the oldest input behind this change arrived, None if no input did (a new watch)."""
        old = self.resources
        self.resources = resources
        changes = _diff(old or {}, resources or {})
        known_changed = (old is None) != (resources is None)
        if changes or known_changed:
            for subscriber in self.subscribers:
                subscriber.mark(changes, since, known_changed=known_changed)
            return True
        return False

    def notify(self, changes: Mapping[str, Iterable[str]], since: float | None = None) -> None:
        """Tell the watches that these names changed in place (``resources`` already holds
        the new content)."""
        for subscriber in self.subscribers:
            subscriber.mark(changes, since)


class Subscription(Waitable):
    """One stream's view of a proxy (``kuma.xds.source.ProxyWatch``). Changes accumulate as
    names per type (latest content is read when the stream gets to it), so a slow stream's
    backlog never exceeds its config."""

    __slots__ = ("_changes", "_known_changed", "_since", "record")

    def __init__(self, record: ProxyRecord) -> None:
        # Waits need an event loop; the engine itself never does (Waitable makes its Wakeup
        # only if the subscription is waited on alone).
        super().__init__()
        self.record = record
        self._changes: dict[str, set[str]] = {}
        self._since: float | None = None
        #: The proxy became known or unknown since the last take (news even without changes).
        self._known_changed = False

    @property
    def node_id(self) -> str:
        return self.record.node_id

    @property
    def known(self) -> bool:
        return self.record.resources is not None

    def resources(self, type_url: str) -> Mapping[str, VersionedResource]:
        resources = self.record.resources
        if resources is None:
            return _EMPTY
        return resources.get(type_url, _EMPTY)

    @property
    def has_changes(self) -> bool:
        return bool(self._changes) or self._known_changed

    def take_changes(self) -> Changes:
        changes = Changes(self._changes, since=self._since)
        self._changes, self._since, self._known_changed = {}, None, False
        return changes

    def mark(
        self,
        changes: Mapping[str, Iterable[str]],
        since: float | None = None,
        *,
        known_changed: bool = False,
    ) -> None:
        for type_url, names in changes.items():
            bucket = self._changes.get(type_url)
            if bucket is None:
                bucket = self._changes[type_url] = set()
            bucket.update(names)
        if since is not None and (self._since is None or since < self._since):
            self._since = since
        self._known_changed = self._known_changed or known_changed
        if self._changes or self._known_changed:
            self._changed()


class ProxyWatches:
    """The proxies with an open watch. ``on_first`` is called with a new record before its
    first watch opens (fill its resources there), ``on_last`` after its last watch closed,
    ``on_metadata`` when a new stream's node says something new about a watched proxy (the
    latest stream's metadata wins; a reader that is not the proxy, metadata None, says
    nothing).

    ``linger``: seconds a proxy's record outlives its last watch (0: none). A proxy that
    reconnects within them (a network blip, a mass reconnect) finds its record as it is, kept
    up to date meanwhile like any other, instead of being assembled from scratch on its first
    watch (Kuma keeps a proxy's snapshot in its cache the same way). ``on_last`` is called when
    the time is up, at the next subscribe or unsubscribe after it (:meth:`expire`)."""

    def __init__(
        self,
        on_first: Callable[[ProxyRecord], None],
        on_last: Callable[[ProxyRecord], None],
        on_metadata: Callable[[ProxyRecord], None] | None = None,
        *,
        linger: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._records: dict[str, ProxyRecord] = {}
        self._on_first = on_first
        self._on_last = on_last
        self._on_metadata = on_metadata
        self._linger = linger
        self._clock = clock
        #: Records without a watch, by node id, with when they are forgotten; in the order
        #: they lost their last watch, so the due ones are at the front.
        self._lingering: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._records)

    def get(self, node_id: str) -> ProxyRecord | None:
        return self._records.get(node_id)

    def subscribe(self, node_id: str, metadata: ProxyMetadata | None = None) -> Subscription:
        """Start following a proxy (``InvalidNodeId``, a ValueError, for a malformed id)."""
        if self._lingering:
            self._lingering.pop(node_id, None)
            self.expire()
        record = self._records.get(node_id)
        if record is None:
            mesh, name = parse_proxy_id(node_id)
            record = self._records[node_id] = ProxyRecord(node_id, mesh, name)
            record.metadata = metadata or NO_METADATA
            self._on_first(record)
        elif metadata is not None and record.metadata != metadata:
            record.metadata = metadata
            if self._on_metadata is not None:
                self._on_metadata(record)
        subscription = Subscription(record)
        record.subscribers.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        record = subscription.record
        if subscription in record.subscribers:
            record.subscribers.remove(subscription)
        if record.subscribers or self._records.get(record.node_id) is not record:
            return
        if self._linger > 0:
            # Re-inserted at the end: the order stays that of the deadlines.
            self._lingering.pop(record.node_id, None)
            self._lingering[record.node_id] = self._clock() + self._linger
            self.expire()
            return
        # The last stream of this proxy is gone: forget its state.
        del self._records[record.node_id]
        self._on_last(record)

    def expire(self) -> None:
        """Forget the records whose linger time is up (and that no watch took back)."""
        lingering = self._lingering
        now = self._clock()
        while lingering:
            node_id, deadline = next(iter(lingering.items()))
            if deadline > now:
                return
            del lingering[node_id]
            record = self._records.pop(node_id)
            self._on_last(record)

    def watch_proxy(
        self, node_id: str, metadata: ProxyMetadata | None = None
    ) -> WatchContext[Subscription]:
        """``kuma.xds.source.ConfigSource``: follow a proxy while the context is open (one
        slotted object per stream, :mod:`kuma.xds.watch_context`)."""
        return WatchContext(self.subscribe, self.unsubscribe, node_id, metadata)


def _diff(old: ProxyResources, new: ProxyResources) -> dict[str, set[str]]:
    changes: dict[str, set[str]] = {}
    for type_url in old.keys() | new.keys():
        before = old.get(type_url, {})
        after = new.get(type_url, {})
        # Equal content is one interned object: most names pass the identity test.
        names = {
            name
            for name, b in after.items()
            if (a := before.get(name)) is not b and (a is None or a.version != b.version)
        }
        names.update(before.keys() - after.keys())
        if names:
            changes[type_url] = names
    return changes

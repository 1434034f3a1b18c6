"""The incremental (delta) ADS protocol of one stream, as a pure state machine.

No I/O: :meth:`DeltaProtocol.handle_request` takes the client's requests,
:meth:`DeltaProtocol.resources_changed` takes the engine's change notices, and
:meth:`DeltaProtocol.build_responses` turns "desired vs what the client holds" into the
responses of one wake-up. The stream plumbing sends them in the order returned.

What the client holds is recorded when a response is built, not when it is ACKed: Envoy keeps
what it accepted and a NACKed version must not be sent again until the content changes
(Envoy leaks memory on repeated NACKs), so "sent" is the right notion of "held" for deciding
what to send next. The rules followed, and the bugs of other control planes that taught them,
are named where they apply and pinned by the tables in tests/xds/test_server_delta.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from envoy.service.discovery.v3.discovery_pb2 import (
    DeltaDiscoveryResponse,
    Resource,
)
from google.protobuf.any_pb2 import Any as AnyPb  # type: ignore[import-untyped, unused-ignore]

from kuma.xds.snapshot import VersionedResource
from kuma.xds.types import CLUSTER, ENDPOINT, LISTENER, SEND_ORDER

from .acks import Nonces, Reply, check_type_url
from .chunks import split
from .wire import wire_response

log = logging.getLogger(__name__)

#: The desired resources of one type, by name (the engine's read-only view).
Desired = Callable[[str], Mapping[str, VersionedResource]]

WILDCARD = "*"
#: A first request with no names subscribes to everything only for these (as Envoy does).
LEGACY_WILDCARD_TYPES = frozenset({CLUSTER, LISTENER})


@dataclass(frozen=True)
class TypeSet:
    """The resource types one kind of delta stream carries: Envoy's xDS types (the default), or
    another protocol that reuses this state machine with its own (Kuma's KDS: Kuma resource
    types between control planes)."""

    #: Make before break: additions in this order, removals in the reverse order.
    send_order: tuple[str, ...]
    #: Types a first request without names subscribes to as a wildcard.
    legacy_wildcard: frozenset[str] = frozenset()
    #: Every type of ``send_order``: built once here and shared by every stream (a frozenset
    #: of six types per stream was 0.7 KB of every connected proxy).
    known: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "known", frozenset(self.send_order))


ENVOY_TYPES = TypeSet(SEND_ORDER, LEGACY_WILDCARD_TYPES)
#: A version no resource has: the client holds the name but must be sent it again (or be told
#: it is gone). Content hashes are never empty.
_RESEND = ""
_NO_NAMES: frozenset[str] = frozenset()


class _Subscription:
    """One type's sub-stream: what the client wants and what it holds."""

    __slots__ = ("dirty", "full_scan", "held", "names", "reply_due", "wildcard")

    def __init__(self) -> None:
        self.wildcard = False
        #: Names subscribed explicitly (they may not exist yet).
        self.names: set[str] | frozenset[str] = _NO_NAMES
        #: name -> version the client holds: sent on this stream or declared on reconnect.
        #: Only names the client wants are kept, so a removal is only ever sent for them.
        self.held: dict[str, str] = {}
        #: Names to reconcile on the next build.
        self.dirty: set[str] | frozenset[str] = _NO_NAMES
        #: Reconcile every desired and held name (the wildcard was just taken).
        self.full_scan = False
        #: The wildcard was just taken: reply even with nothing to send (Envoy waits for it).
        self.reply_due = False

    # Both sets start as the shared empty frozenset and become sets on their first name: two
    # empty sets per type per stream were 2 KB of every connected proxy.

    def mark(self, names: Iterable[str]) -> None:
        """Reconcile these names on the next build."""
        dirty = self.dirty
        if isinstance(dirty, set):
            dirty.update(names)
        elif marked := set(names):
            self.dirty = marked

    def add_name(self, name: str) -> None:
        names = self.names
        if isinstance(names, set):
            names.add(name)
        else:
            self.names = {name}

    def discard_name(self, name: str) -> None:
        names = self.names
        if isinstance(names, set):
            names.discard(name)

    def wants(self, name: str) -> bool:
        return self.wildcard or name in self.names

    @property
    def pending(self) -> bool:
        return bool(self.dirty) or self.full_scan or self.reply_due


class DeltaProtocol:
    """The delta protocol state of one stream."""

    def __init__(
        self,
        types: TypeSet = ENVOY_TYPES,
        max_response_bytes: int | None = None,
        *,
        wire: bool = False,
    ) -> None:
        if wire and max_response_bytes is not None:
            raise ValueError("responses split by size are messages, not wire responses")
        self._types = types
        #: No response larger than this (KDS's ``maxMsgSize``): a type's changes are split
        #: over several responses (chunks.py). None: one response per type, as for Envoy.
        self._max_bytes = max_response_bytes
        #: Build each response as its bytes (:mod:`.wire`, the ADS server's) instead of a
        #: ``DeltaDiscoveryResponse`` message.
        self._wire = wire
        self._known = types.known
        self._subs: dict[str, _Subscription] = {}
        self._nonces = Nonces()
        # Clusters sent before the stream had any EDS subscription: their endpoints must be sent
        # even if the first EDS request declares them held (the cluster update cleared them).
        self._clusters_without_eds: set[str] = set()

    @property
    def has_work(self) -> bool:
        # Asked after every request and every wake-up of every stream.
        for sub in self._subs.values():  # noqa: SIM110 (any() over a generator: 2.7x slower)
            if sub.dirty or sub.full_scan or sub.reply_due:
                return True
        return False

    def handle_request(self, request: Any) -> Reply | None:
        """Apply a ``DeltaDiscoveryRequest``; return its ACK/NACK part, if any.

        Raises :class:`~kuma.xds.server.node.InvalidRequest` for a missing or unknown type.
        """
        type_url: str = request.type_url
        check_type_url(type_url, self._known)
        reply = self._nonces.reply(request)
        subscribe: Iterable[str] = request.resource_names_subscribe
        sub = self._subs.get(type_url)
        if sub is None:
            sub = self._subs[type_url] = _Subscription()
            if not subscribe and type_url in self._types.legacy_wildcard:
                _take_wildcard(sub)
            _subscribe(sub, subscribe)
            # initial_resource_versions only counts on the first request of a type.
            self._declare_held(type_url, sub, request.initial_resource_versions)
        else:
            _subscribe(sub, subscribe)
        _unsubscribe(sub, request.resource_names_unsubscribe)
        return reply

    def resources_changed(self, changes: Mapping[str, Iterable[str]]) -> None:
        """Note the names the engine reports changed or removed, per type."""
        for type_url, names in changes.items():
            sub = self._subs.get(type_url)
            if sub is None:
                continue
            if sub.wildcard:
                sub.mark(names)
            else:
                sub.mark(name for name in names if name in sub.names)

    def build_responses(self, desired: Desired) -> list[Any]:
        """The ``DeltaDiscoveryResponse`` s of one wake-up, in the order they must be sent.

        Make before break: additions and updates go clusters, endpoints, listeners, routes;
        removals follow in the reverse order, so nothing is removed while still in use.
        """
        updates: list[tuple[str, list[VersionedResource]]] = []
        removals: list[tuple[str, list[str]]] = []
        for type_url in self._types.send_order:
            sub = self._subs.get(type_url)
            # EDS is checked after CDS built: a cluster sent just now makes its endpoints dirty.
            if sub is None or not sub.pending:
                continue
            send, remove = self._reconcile(type_url, sub, desired(type_url))
            if type_url == CLUSTER:
                self._clusters_sent([r.name for r in send], remove)
            if send or (sub.reply_due and not remove):
                updates.append((type_url, send))
            if remove:
                removals.append((type_url, remove))
            sub.reply_due = False
        removals.reverse()
        responses: list[Any] = []
        # One type both last to update and first to remove: one response says both.
        merged = bool(updates and removals and updates[-1][0] == removals[0][0])
        for index, (type_url, send) in enumerate(updates):
            last = index == len(updates) - 1
            removed = removals[0][1] if merged and last else []
            responses.extend(self._responses(type_url, send, removed))
        for type_url, remove in removals[1:] if merged else removals:
            responses.extend(self._responses(type_url, [], remove))
        return responses

    def _declare_held(self, type_url: str, sub: _Subscription, versions: Mapping[str, str]) -> None:
        """A reconnecting client's ``initial_resource_versions``: send only what differs."""
        if type_url == ENDPOINT:
            stale = self._clusters_without_eds
            self._clusters_without_eds = set()
        else:
            stale = set()
        for name, version in versions.items():
            if sub.wants(name):
                sub.held[name] = _RESEND if name in stale else version
                sub.mark((name,))

    def _clusters_sent(self, names: list[str], removed: list[str]) -> None:
        """After a Cluster is (re)sent, its endpoints must follow even if unchanged.

        Envoy keeps an updated cluster warming until it gets an endpoints response for it
        (envoy#13009, consul#10379), and the update cleared the endpoints it had: an EDS
        response (or ACK) from before the update no longer counts (consul#19866).
        """
        eds = self._subs.get(ENDPOINT)
        if eds is None:
            self._clusters_without_eds.update(names)
            self._clusters_without_eds.difference_update(removed)
            return
        for name in names:
            if eds.wants(name):
                if name in eds.held:
                    eds.held[name] = _RESEND
                eds.mark((name,))

    def _reconcile(
        self, type_url: str, sub: _Subscription, current: Mapping[str, VersionedResource]
    ) -> tuple[list[VersionedResource], list[str]]:
        """What to send and what to remove so the client holds ``current`` (for what it wants).

        Removals are computed against the full current set, never a partial view (istio#36273).
        """
        candidates = sub.dirty
        if sub.full_scan and sub.wildcard:
            candidates = candidates | current.keys() | sub.held.keys()
        sub.dirty = _NO_NAMES
        sub.full_scan = False
        send: list[VersionedResource] = []
        remove: list[str] = []
        held = sub.held
        # Sorted: responses are reproducible, and a set never repeats a name.
        for name in sorted(candidates):
            if not sub.wants(name):
                continue
            resource = current.get(name)
            if resource is not None:
                if resource.version != held.get(name):
                    if resource.type_url != type_url:
                        log.error("skip %s: a %s listed as %s", name, resource.type_url, type_url)
                        continue
                    send.append(resource)
                    held[name] = resource.version
            elif name in held:
                remove.append(name)
                del held[name]
        return send, remove

    def _responses(
        self, type_url: str, send: list[VersionedResource], remove: list[str]
    ) -> list[Any]:
        # The bodies are the engine's serialized messages: packed as they are, never re-encoded.
        if self._wire:
            nonce = self._nonces.issue(type_url, (*(r.name for r in send), *remove))
            return [wire_response(type_url, nonce, send, remove)]
        resources = [
            Resource(
                name=r.name, version=r.version, resource=AnyPb(type_url=type_url, value=r.body)
            )
            for r in send
        ]
        if self._max_bytes is None:
            return [self._response(type_url, resources, remove)]
        parts, oversized = split(type_url, resources, remove, self._max_bytes)
        sub = self._subs[type_url]
        for name, size in oversized:
            log.error(
                "not sent: %s %s is %d bytes, more than the %d bytes a message may carry",
                type_url,
                name,
                size,
                self._max_bytes,
            )
            # Not held: a later version is tried again (and a removal still sent).
            sub.held[name] = _RESEND
        return [self._response(type_url, chunk, gone) for chunk, gone in parts]

    def _response(self, type_url: str, resources: list[Resource], remove: list[str]) -> Any:
        names = tuple(r.name for r in resources) + tuple(remove)
        nonce = self._nonces.issue(type_url, names)
        return DeltaDiscoveryResponse(
            type_url=type_url, nonce=nonce, resources=resources, removed_resources=remove
        )


def _take_wildcard(sub: _Subscription) -> None:
    if not sub.wildcard:
        sub.wildcard = True
        sub.full_scan = True
        sub.reply_due = True


def _subscribe(sub: _Subscription, names: Iterable[str]) -> None:
    for name in names:
        if name == WILDCARD:
            _take_wildcard(sub)
            continue
        sub.add_name(name)
        # Sent even if the client is believed to hold it: it may have dropped it (envoy#22418).
        # Still held, not forgotten: if it no longer exists, the client is told to remove it.
        if name in sub.held:
            sub.held[name] = _RESEND
        sub.mark((name,))


def _unsubscribe(sub: _Subscription, names: Iterable[str]) -> None:
    for name in names:
        if name == WILDCARD:
            sub.wildcard = False
            sub.full_scan = False
            sub.reply_due = False
            # What the client held only through the wildcard is no longer followed.
            for held in [n for n in sub.held if n not in sub.names]:
                del sub.held[held]
            continue
        sub.discard_name(name)
        if sub.wildcard:
            # Still wanted through the wildcard: the client must be told whether it exists,
            # by sending it whole again or removing it (as the xDS spec asks).
            if name in sub.held:
                sub.held[name] = _RESEND
            sub.mark((name,))
        else:
            # Forget it: a later re-subscribe sends it again (Envoy re-subscribes EDS itself).
            sub.held.pop(name, None)

"""The state-of-the-world ADS protocol of one stream, as a pure state machine.

Same shape as :mod:`.delta`: requests and change notices in, the responses of one wake-up out.
Each response holds the whole set for its type: every resource for a wildcard subscription
(LDS and CDS when no names are given, or ``"*"``), else the requested names that exist.
``version_info`` is a hash of the set's names and versions, so an unchanged set is never sent
twice, a NACKed set is not sent again until the content changes, and a reconnecting client that
presents the version of exactly the current set is sent nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from envoy.service.discovery.v3.discovery_pb2 import DiscoveryResponse
from google.protobuf.any_pb2 import Any as AnyPb  # type: ignore[import-untyped, unused-ignore]

from kuma.xds.snapshot import VersionedResource
from kuma.xds.types import CLUSTER, ENDPOINT, SEND_ORDER

from .acks import Nonces, Reply, check_type_url
from .delta import LEGACY_WILDCARD_TYPES, WILDCARD, Desired

Content = dict[str, VersionedResource]


class _TypeState:
    __slots__ = ("dirty", "force", "legacy", "names", "sent", "sent_version", "wildcard")

    def __init__(self) -> None:
        self.wildcard = False
        #: Still in legacy wildcard mode: an empty request keeps the wildcard.
        self.legacy = False
        self.names: frozenset[str] = frozenset()
        #: The content of the last response (``None`` before the first on this stream).
        self.sent: Content | None = None
        #: ``version_info`` of the last response, or the version a reconnecting client presented.
        self.sent_version: str | None = None
        self.dirty = True
        #: Send even if the version is unchanged (endpoints after their cluster changed).
        self.force = False

    def wants_any(self, names: Iterable[str]) -> bool:
        return self.wildcard or not self.names.isdisjoint(names)

    def content(self, current: Mapping[str, VersionedResource]) -> Content:
        if self.wildcard:
            return dict(current)
        return {name: current[name] for name in self.names if name in current}


def set_version(content: Content) -> str:
    """A deterministic version of a set: a hash of its sorted names and resource versions."""
    digest = hashlib.blake2b(digest_size=8)
    for name in sorted(content):
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(content[name].version.encode())
        digest.update(b"\n")
    return digest.hexdigest()


class SotwProtocol:
    """The state-of-the-world protocol state of one stream."""

    def __init__(self) -> None:
        self._types: dict[str, _TypeState] = {}
        self._nonces = Nonces()

    @property
    def has_work(self) -> bool:
        return any(state.dirty for state in self._types.values())

    def handle_request(self, request: Any) -> Reply | None:
        """Apply a ``DiscoveryRequest``; return its ACK/NACK part, if any."""
        type_url: str = request.type_url
        check_type_url(type_url)
        reply = self._nonces.reply(request)
        requested = list(request.resource_names)
        names = frozenset(name for name in requested if name != WILDCARD)
        state = self._types.get(type_url)
        if state is None:
            state = self._types[type_url] = _TypeState()
            state.legacy = not requested and type_url in LEGACY_WILDCARD_TYPES
            state.wildcard = state.legacy or WILDCARD in requested
            state.names = names
            # The version the client already holds (from an earlier stream, maybe another CP):
            # when it is the hash of exactly the current set there is nothing to send.
            state.sent_version = request.version_info or None
            return reply
        if state.legacy and not requested:
            return reply
        # Any name ends the legacy mode; from then on only "*" means everything.
        state.legacy = False
        wildcard = WILDCARD in requested
        if wildcard != state.wildcard or names != state.names:
            state.wildcard = wildcard
            state.names = names
            state.dirty = True
        return reply

    def resources_changed(self, changes: Mapping[str, Iterable[str]]) -> None:
        for type_url, names in changes.items():
            state = self._types.get(type_url)
            if state is not None and not state.dirty and state.wants_any(names):
                state.dirty = True

    def build_responses(self, desired: Desired) -> list[Any]:
        """The ``DiscoveryResponse`` s of one wake-up, in the order they must be sent.

        Clusters, endpoints, listeners, routes (make before break). A cluster removed in the
        same wake-up as other changes is kept in a first CDS response and dropped in a last
        one, after the listeners stopped using it.
        """
        planned: list[tuple[str, _TypeState, Content]] = []
        for type_url in SEND_ORDER:
            state = self._types.get(type_url)
            if state is None or not state.dirty:
                continue
            state.dirty = False
            content = state.content(desired(type_url))
            if not self._must_send(state, content):
                continue
            state.force = False
            if type_url == CLUSTER:
                self._clusters_sent(state.sent, content)
            planned.append((type_url, state, content))
        responses: list[Any] = []
        deferred: tuple[_TypeState, Content] | None = None
        for type_url, state, content in planned:
            if type_url == CLUSTER and state.sent is not None and len(planned) > 1:
                gone = {name: state.sent[name] for name in state.sent if name not in content}
                if gone:
                    responses.append(self._response(type_url, state, content | gone))
                    deferred = (state, content)
                    continue
            responses.append(self._response(type_url, state, content))
        if deferred is not None:
            responses.append(self._response(CLUSTER, *deferred))
        return responses

    def _must_send(self, state: _TypeState, content: Content) -> bool:
        if not content and not state.wildcard and state.sent_version is None:
            # Nothing requested exists yet and the client holds nothing: say nothing. (The first
            # wildcard reply is always sent, even empty: Envoy waits for it to finish starting.)
            return False
        if state.force:
            return True
        return set_version(content) != state.sent_version

    def _clusters_sent(self, before: Content | None, after: Content) -> None:
        """Changed clusters make their endpoints due again, even unchanged (consul#19866)."""
        eds = self._types.get(ENDPOINT)
        if eds is None:
            return
        changed = [
            name
            for name, resource in after.items()
            if before is None or name not in before or before[name].version != resource.version
        ]
        if changed and eds.wants_any(changed):
            eds.force = True
            eds.dirty = True

    def _response(self, type_url: str, state: _TypeState, content: Content) -> Any:
        names = tuple(sorted(content))
        version = set_version(content)
        nonce = self._nonces.issue(type_url, names)
        state.sent = content
        state.sent_version = version
        resources = [AnyPb(type_url=type_url, value=content[name].body) for name in names]
        return DiscoveryResponse(
            version_info=version, type_url=type_url, nonce=nonce, resources=resources
        )

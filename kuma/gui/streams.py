"""What the GUI learns from the ADS streams themselves (a :class:`StreamObserver`).

* A stream opening or closing is a proxy going online or offline: a ``proxy`` notice.
* Responses, ACKs and NACKs change a proxy's insight counters: an ``insight`` notice (the feed
  coalesces them per proxy, so a busy proxy costs each page one notice per burst).
* A NACK carries Envoy's error text, which the DataplaneInsight does not keep (Kuma's neither):
  the last few are kept here per proxy, with their time and type, for the Dataplane page.

Every call is synchronous and cheap; when no page is open nothing is built at all.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from kuma.xds.server.observer import Flavour
from kuma.xds.server.tally import Tally
from kuma.xds.types import SHORT_NAMES

from .feed import LiveFeed

#: NACKs remembered per proxy, newest last.
NACKS_KEPT = 5
#: Envoy's error text is cut to this many characters (it can quote a whole resource).
MAX_ERROR_TEXT = 4000


def _split(node_id: str) -> tuple[str, str]:
    mesh, _, name = node_id.partition(".")
    return mesh, name


class StreamWatcher:
    def __init__(self, feed: LiveFeed, *, clock: Callable[[], float] = time.time) -> None:
        self._feed = feed
        self._clock = clock
        #: node id -> open streams (a reconnecting Envoy briefly holds two).
        self._open: dict[str, int] = {}
        self._nacks: dict[str, deque[dict[str, Any]]] = {}

    # --- reads ---------------------------------------------------------------------------------

    def nacks(self, mesh: str, name: str) -> list[dict[str, Any]]:
        """The proxy's last NACKs seen by this instance, newest first: ``{time, type, nonce,
        error}`` (time in Unix seconds)."""
        return list(reversed(self._nacks.get(f"{mesh}.{name}", ())))

    def is_open(self, node_id: str) -> bool:
        """Some stream of the proxy is open on this instance."""
        return node_id in self._open

    def forget(self, mesh: str, name: str) -> None:
        """The Dataplane is gone: drop what was kept for it."""
        self._nacks.pop(f"{mesh}.{name}", None)

    # --- StreamObserver ------------------------------------------------------------------------

    def on_stream_open(
        self, stream_id: int, node_id: str, protocol: Flavour, envoy_version: str
    ) -> None:
        self._open[node_id] = self._open.get(node_id, 0) + 1
        self._proxy(node_id, online=True)

    def on_stream_close(self, stream_id: int, node_id: str) -> None:
        left = self._open.get(node_id, 0) - 1
        if left > 0:
            self._open[node_id] = left
            return
        self._open.pop(node_id, None)
        self._proxy(node_id, online=False)

    def on_response(self, node_id: str, type_url: str, resource_count: int, nonce: str) -> None:
        self._insight(node_id)

    def on_ack(self, node_id: str, type_url: str, nonce: str) -> None:
        self._insight(node_id)

    def on_tally(self, tally: Tally) -> None:
        """One loop turn's responses and ACKs: one ``insight`` notice per proxy they touched
        (the feed coalesces per proxy anyway), nothing at all when no page is open."""
        if not self._feed.subscribers:
            return
        touched = dict.fromkeys(sent[0] for sent in tally.sent)
        touched.update(dict.fromkeys(acked[0] for acked in tally.acked))
        for node_id in touched:
            self._insight(node_id)

    def on_nack(self, node_id: str, type_url: str, nonce: str, message: str) -> None:
        kept = self._nacks.get(node_id)
        if kept is None:
            kept = self._nacks[node_id] = deque(maxlen=NACKS_KEPT)
        kept.append(
            {
                "time": self._clock(),
                "type": SHORT_NAMES.get(type_url, type_url),
                "nonce": nonce,
                "error": message[:MAX_ERROR_TEXT],
            }
        )
        self._insight(node_id)

    # --- internals -----------------------------------------------------------------------------

    def _proxy(self, node_id: str, *, online: bool) -> None:
        mesh, name = _split(node_id)
        self._feed.publish({"kind": "proxy", "mesh": mesh, "name": name, "online": online})

    def _insight(self, node_id: str) -> None:
        if self._feed.subscribers:
            mesh, name = _split(node_id)
            self._feed.publish({"kind": "insight", "mesh": mesh, "name": name})

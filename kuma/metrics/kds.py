"""What KDS costs on the wire: the bytes of the responses a control plane sends on its KDS
streams, by peer and kind (``kuma_kds_sent_bytes``). On global the peers are the zones
(global → zone); on a zone the peer is ``global`` (zone → global). Insights travel up as their
own kinds, so a resource change can be told apart from the insight stream.

Bytes are the serialized ``DeltaDiscoveryResponse`` (protobuf ``ByteSize``), before gRPC's
5-byte message prefix, HTTP/2 framing and TLS. ACKs (requests) are not counted: a few dozen
bytes each, one per response.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter

from kuma.kds.codec import TYPE_PREFIX


class KdsTraffic:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent_bytes = Counter(
            "kuma_kds_sent_bytes",
            "Bytes of KDS responses sent (serialized DeltaDiscoveryResponse), by peer and kind",
            ["peer", "kind"],
            registry=registry,
        )
        self.sent_responses = Counter(
            "kuma_kds_sent_responses",
            "KDS responses sent, by peer and kind",
            ["peer", "kind"],
            registry=registry,
        )

    def observer(self, peer: str) -> SentTraffic:
        """The observer of one stream to ``peer`` (a :class:`kuma.kds.sender.Observer`)."""
        return SentTraffic(self, peer)


class SentTraffic:
    def __init__(self, traffic: KdsTraffic, peer: str) -> None:
        self._traffic = traffic
        self._peer = peer
        #: Children resolved once per kind: ``labels()`` locks and builds a tuple per call.
        self._children: dict[str, tuple[Any, Any]] = {}

    def on_request(self, request: Any) -> None:
        pass

    def on_response(self, response: Any) -> None:
        children = self._children.get(response.type_url)
        if children is None:
            kind = response.type_url.removeprefix(TYPE_PREFIX)
            children = (
                self._traffic.sent_bytes.labels(self._peer, kind),
                self._traffic.sent_responses.labels(self._peer, kind),
            )
            self._children[response.type_url] = children
        children[0].inc(response.ByteSize())
        children[1].inc()

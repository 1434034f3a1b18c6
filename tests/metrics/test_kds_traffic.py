"""kuma_kds_sent_bytes / kuma_kds_sent_responses: what a KDS stream's observer counts."""

from __future__ import annotations

from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryResponse
from prometheus_client import CollectorRegistry

from kuma.kds.codec import TYPE_PREFIX
from kuma.kds.sender import Observers
from kuma.metrics.kds import KdsTraffic


def test_bytes_and_responses_are_counted_by_peer_and_kind() -> None:
    registry = CollectorRegistry()
    traffic = KdsTraffic(registry)
    response = DeltaDiscoveryResponse(type_url=TYPE_PREFIX + "ZoneIngress", nonce="1")
    response.resources.add(name="ingress-1", version="v1")
    size = response.ByteSize()
    assert size > 0
    to_zone_1 = Observers(None, traffic.observer("zone-1"))
    to_zone_1.on_response(response)
    to_zone_1.on_response(response)
    traffic.observer("zone-2").on_response(response)

    def sample(name: str, peer: str) -> float | None:
        return registry.get_sample_value(name, {"peer": peer, "kind": "ZoneIngress"})

    assert sample("kuma_kds_sent_bytes_total", "zone-1") == 2 * size
    assert sample("kuma_kds_sent_responses_total", "zone-1") == 2
    assert sample("kuma_kds_sent_bytes_total", "zone-2") == size
    assert sample("kuma_kds_sent_bytes_total", "global") is None

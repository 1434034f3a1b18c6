"""The multi-zone run's pure parts: KDS byte counters read from /metrics text, their deltas,
and the hops read from the kuma-cps' log lines."""

from __future__ import annotations

from datetime import UTC, datetime

from kuma.load.federation import parse_kds_bytes, traffic_delta
from kuma.load.zone_hops import INGRESS_WRITTEN, hops

METRICS = """\
# HELP kuma_kds_sent_bytes_total Bytes of KDS responses sent
# TYPE kuma_kds_sent_bytes_total counter
kuma_kds_sent_bytes_total{peer="zone-1",kind="ZoneIngressService"} 1200.0
kuma_kds_sent_bytes_total{peer="zone-1",kind="Mesh"} 300.0
kuma_kds_sent_bytes_created{peer="zone-1",kind="Mesh"} 1.7e+09
kuma_kds_sent_responses_total{peer="zone-1",kind="Mesh"} 1.0
"""


def test_kds_bytes_are_read_by_peer_and_kind_and_only_what_moved_counts() -> None:
    before = parse_kds_bytes(METRICS)
    assert before == {("zone-1", "ZoneIngressService"): 1200.0, ("zone-1", "Mesh"): 300.0}
    after = {**before, ("zone-1", "ZoneIngressService"): 1600.0, ("zone-2", "Mesh"): 50.0}
    assert traffic_delta(before, after) == {
        "zone-1": {"total": 400, "ZoneIngressService": 400},
        "zone-2": {"total": 50, "Mesh": 50},
    }


def _line(at: float, text: str) -> str:
    stamp = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
    return f"{stamp}\tinfo\tkuma\t{text}"


def test_hops_take_each_changes_first_line_after_its_write() -> None:
    written = [100.0, 200.0]
    zone_2 = "\n".join(
        [_line(99.0, INGRESS_WRITTEN), _line(100.1, INGRESS_WRITTEN), _line(200.3, INGRESS_WRITTEN)]
    )
    global_ = "\n".join(
        [
            _line(100.12, "KDS: zone zone-2 sent 2 ZoneIngressService, 0 removed"),
            _line(100.13, "KDS: zone zone-1 sent 2 ZoneIngressService, 0 removed"),
            _line(200.32, "KDS: zone zone-2 sent 2 ZoneIngressService, 0 removed"),
        ]
    )
    # zone-1 received only the first change's entries: the second is left out of the median.
    zone_1 = "\n".join(
        [
            _line(100.15, "KDS: global sent 1 DataplaneInsight, 0 removed"),
            _line(100.2, "KDS: global sent 2 ZoneIngressService, 0 removed"),
        ]
    )
    found = hops(written, [100.25, None], zone_2=zone_2, global_=global_, zone_1=zone_1)
    assert found == {
        "ingress_written": 200.0,
        "global_received": 220.0,
        "zone_1_received": 200.0,
        "first_zone_1_sidecar": 250.0,
    }

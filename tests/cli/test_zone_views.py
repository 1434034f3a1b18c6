"""kumactl's zone tables against Kuma's own golden files (v2.7.29,
app/kumactl/cmd/{get,inspect}/testdata: the ``.json`` is the list the API answered, the
``.txt`` the table kumactl printed from it, at Kuma's test clock)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from kuma.cli import inspect_zones, table, views
from kuma.cli.commands import BY_TYPE

from .helpers import GOLDEN

KUMA = GOLDEN / "kuma"
#: Kuma's tests' "now".
NOW = datetime(2019, 7, 17, 18, 8, 41, tzinfo=UTC)


@pytest.mark.parametrize(
    ("golden", "what"),
    [
        ("inspect-zones", "zones"),
        ("inspect-zone-ingresses", "zoneingresses"),
        ("inspect-zoneegresses", "zoneegresses"),
    ],
)
def test_inspect_tables_are_kumas(golden: str, what: str) -> None:
    listed = json.loads((KUMA / f"{golden}.json").read_text())
    inspected = inspect_zones.INSPECTED[what]
    rows = views.rows(inspected.row, listed["items"], NOW)
    assert table.render(inspected.headers, rows) == (KUMA / f"{golden}.txt").read_text()


@pytest.mark.parametrize(
    ("golden", "kind"),
    [
        ("get-zones", "Zone"),
        ("get-zone-ingresses", "ZoneIngress"),
        ("get-zoneegresses", "ZoneEgress"),
    ],
)
def test_get_tables_are_kumas(golden: str, kind: str) -> None:
    listed = json.loads((KUMA / f"{golden}.json").read_text())
    shown = BY_TYPE[kind]
    rows = views.rows(shown.row, listed["items"], NOW)
    assert table.render(shown.headers, rows) == (KUMA / f"{golden}.txt").read_text()


def test_a_zone_counts_as_online_only_while_enabled() -> None:
    connected = {"connectTime": "2019-07-17T18:00:00Z", "status": {}}
    online = {"name": "z", "zone": {}, "zoneInsight": {"subscriptions": [connected]}}
    disabled = {**online, "zone": {"enabled": False}}
    gone = {
        **online,
        "zoneInsight": {"subscriptions": [{**connected, "disconnectTime": "2019-07-17T18:01:00Z"}]},
    }
    assert inspect_zones.zone_row(online, NOW)[1] == "Online"
    assert inspect_zones.zone_row(disabled, NOW)[1] == "Offline"
    assert inspect_zones.zone_row(gone, NOW)[1] == "Offline"

"""Table cells and rows with a frozen clock: Kuma's durations, tabwriter layout, and every
``inspect dataplanes`` status from canned DataplaneOverviews (as Kuma's own tests do)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kuma.cli import table, views

from .helpers import assert_golden

NOW = datetime(2020, 5, 1, 10, 28, 22, tzinfo=UTC)


def _at(delta: timedelta) -> str:
    return (NOW - delta).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=-5), "never"),
        (timedelta(seconds=-1.5), "0s"),
        (timedelta(seconds=-0.5), "0s"),
        (timedelta(0), "0s"),
        (timedelta(seconds=59.9), "59s"),
        (timedelta(seconds=60), "1m"),
        (timedelta(minutes=59, seconds=59), "59m"),
        (timedelta(hours=1), "1h"),
        (timedelta(hours=23, minutes=59), "23h"),
        (timedelta(days=1), "1d"),
        (timedelta(days=364), "364d"),
        (timedelta(days=365), "1y"),
        (timedelta(days=800), "2y"),
    ],
)
def test_durations_as_kuma_prints_them(delta: timedelta, text: str) -> None:
    assert table.duration(delta) == text


def test_times_and_dates() -> None:
    assert table.ago(None, NOW) == "never"
    assert table.date(None, NOW) == "-"
    assert table.parse_time("2020-05-01T10:28:21.123456789Z") == datetime(
        2020, 5, 1, 10, 28, 21, 123456, tzinfo=UTC
    )
    assert table.parse_time("2020-05-01T12:28:22+02:00") == NOW
    assert table.parse_time("2020-05-01T10:28:22") == NOW
    for bad in (None, "", 5, "yesterday", "2020-13-01T10:28:22Z"):
        assert table.parse_time(bad) is None
    berlin = NOW.astimezone(datetime.fromisoformat("2020-01-01T00:00:00+02:00").tzinfo)
    assert table.date(NOW, berlin) == "2020-05-01 12:28:22"


def test_tabwriter_layout() -> None:
    text = table.render(["A", "LONGER", "LAST"], [["x", "", "tail"], ["wide-cell", "y", ""]])
    assert text == ("A           LONGER   LAST\nx                    tail\nwide-cell   y        \n")
    footer = table.render(["NAME"], [["a"]], "Rerun command with --offset=b")
    assert footer == "NAME\na\n\nRerun command with --offset=b\n"


def test_tag_sets_merge_inbounds_and_gateway() -> None:
    networking = {
        "inbound": [
            {"tags": {"kuma.io/service": "web", "version": "v1"}},
            {"tags": {"kuma.io/service": "metrics", "version": "v1"}},
        ],
        "gateway": {"tags": {"zone": "east"}},
    }
    assert views.tag_set(networking) == "kuma.io/service=metrics,web version=v1 zone=east"
    assert views.tag_set({}) == ""


def _overview(name: str, dataplane: dict[str, Any], insight: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "DataplaneOverview",
        "mesh": "default",
        "name": name,
        "dataplane": {"networking": {"address": "10.0.0.1", **dataplane}},
        "dataplaneInsight": insight,
    }


def _inbound(port: int, service: str, **extra: Any) -> dict[str, Any]:
    return {"port": port, "tags": {"kuma.io/service": service, "version": "v1"}, **extra}


VERSION = {
    "kumaDp": {"version": "1.0.2", "gitTag": "v1.0.2"},
    "envoy": {"version": "1.16.1", "build": "hash/1.16.1/RELEASE"},
    "dependencies": {"coredns": "1.8.3", "aaa": "0.1"},
}
MTLS = {
    "certificateExpirationTime": "2020-05-08T08:28:22Z",
    "lastCertificateRegeneration": _at(timedelta(hours=22)),
    "certificateRegenerations": 10,
    "issuedBackend": "ca-1",
    "supportedBackends": ["ca-1", "ca-2"],
}
ONLINE = {
    "subscriptions": [
        {
            "id": "1",
            "connectTime": _at(timedelta(days=3)),
            "disconnectTime": _at(timedelta(days=2)),
            "status": {"total": {"responsesSent": "20", "responsesRejected": "2"}},
        },
        {
            "id": "2",
            "connectTime": _at(timedelta(hours=2)),
            "status": {
                "lastUpdateTime": _at(timedelta(minutes=5, seconds=30)),
                "total": {"responsesSent": "10", "responsesRejected": 1},
            },
            "version": VERSION,
        },
    ],
    "mTLS": MTLS,
}
OFFLINE = {
    "subscriptions": [
        {
            "id": "1",
            "connectTime": _at(timedelta(hours=3)),
            "disconnectTime": _at(timedelta(hours=1)),
            "status": {"total": {"responsesSent": "7"}},
        }
    ]
}
CANNED = [
    _overview("online", {"inbound": [_inbound(8080, "mobile"), _inbound(8090, "metrics")]}, ONLINE),
    _overview(
        "degraded",
        {
            "inbound": [
                _inbound(8080, "example"),
                _inbound(9001, "example", health={"ready": False}),
            ]
        },
        ONLINE,
    ),
    _overview(
        "all-not-ready",
        {
            "inbound": [
                _inbound(8080, "example", state="NotReady"),
                _inbound(9001, "example", health={"ready": False}),
            ]
        },
        ONLINE,
    ),
    _overview("disconnected", {"inbound": [_inbound(8080, "example")]}, OFFLINE),
    _overview("never-connected", {"inbound": [_inbound(8080, "example")]}, {}),
    _overview("gateway", {"gateway": {"tags": {"kuma.io/service": "edge"}}}, ONLINE),
]


def test_inspect_rows_for_every_status() -> None:
    rows = views.rows(views.overview_row, CANNED, NOW)
    assert [(row[1], row[3]) for row in rows] == [
        ("online", "Online"),
        ("degraded", "Partially degraded"),
        ("all-not-ready", "Offline"),
        ("disconnected", "Offline"),
        ("never-connected", "Offline"),
        ("gateway", "Online"),
    ]
    assert_golden("inspect-rendering.txt", table.render(views.OVERVIEW_HEADERS, rows))


def test_mesh_rows() -> None:
    mesh = {
        "name": "m",
        "modificationTime": _at(timedelta(hours=5)),
        "mtls": {"enabledBackend": "ca-2", "backends": [{"name": "ca-2", "type": "provided"}]},
        "metrics": {
            "enabledBackend": "prom",
            "backends": [{"name": "prom", "type": "prometheus"}],
        },
        "logging": {"backends": []},
        "tracing": {"backends": [{"name": "z", "type": "zipkin"}, {"name": "j", "type": "x"}]},
        "routing": {"zoneEgress": True},
    }
    assert views.mesh_row(mesh, NOW) == [
        "m",
        "provided/ca-2",
        "prometheus/prom",
        "off",
        "zipkin/z, x/j",
        "off",
        "on",
        "5h",
    ]

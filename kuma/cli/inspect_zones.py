"""``kumactl inspect zones|zoneingresses|zoneegresses``: Kuma's overview tables
(app/kumactl/cmd/inspect/inspect_zones.go, inspect_zoneingresses.go, inspect_zoneegresses.go)
from the API's overviews (kuma/api/zone_overviews.py), at the paths kumactl 2.7 calls.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import table, views
from .commands import Session, list_all, print_document
from .views import Document, RowFn

_STATUS_HEADERS = [
    "NAME",
    "STATUS",
    "LAST CONNECTED AGO",
    "LAST UPDATED AGO",
    "TOTAL UPDATES",
    "TOTAL ERRORS",
]
ZONE_HEADERS = [*_STATUS_HEADERS, "ZONE-CP VERSION", "BACKEND"]
ZONE_PROXY_HEADERS = [*_STATUS_HEADERS, "KUMA-DP VERSION", "ENVOY VERSION"]


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _subscriptions(insight: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    value = insight.get("subscriptions")
    return [_map(s) for s in value] if isinstance(value, list) else []


def _sums(subscriptions: list[Mapping[str, Any]]) -> tuple[str, str]:
    """TOTAL UPDATES and TOTAL ERRORS: responses sent and rejected over every subscription."""
    totals = [_map(_map(s.get("status")).get("total")) for s in subscriptions]
    sent = sum(views.number(t.get("responsesSent")) for t in totals)
    rejected = sum(views.number(t.get("responsesRejected")) for t in totals)
    return str(sent), str(rejected)


def _online(subscriptions: list[Mapping[str, Any]]) -> bool:
    return any(s.get("connectTime") and not s.get("disconnectTime") for s in subscriptions)


def _times(last: Mapping[str, Any], now: datetime) -> list[str]:
    return [
        table.ago(table.parse_time(last.get("connectTime")), now),
        table.ago(table.parse_time(_map(last.get("status")).get("lastUpdateTime")), now),
    ]


def _backend(config: object) -> str:
    """The store type in the zone's reported configuration (Kuma reads only that)."""
    if not isinstance(config, str) or not config:
        return ""
    try:
        parsed = json.loads(config)
    except ValueError:
        return ""
    return str(_map(_map(parsed).get("store")).get("type", ""))


def zone_row(document: Document, now: datetime) -> list[str]:
    subscriptions = _subscriptions(_map(document.get("zoneInsight")))
    last = subscriptions[-1] if subscriptions else {}
    # Kuma: an unset ``enabled`` is enabled.
    enabled = _map(document.get("zone")).get("enabled") is not False
    return [
        str(document.get("name", "")),
        "Online" if _online(subscriptions) and enabled else "Offline",
        *_times(last, now),
        *_sums(subscriptions),
        str(_map(_map(last.get("version")).get("kumaCp")).get("version", "")),
        _backend(last.get("config")),
    ]


def _zone_proxy_row(insight_key: str) -> RowFn:
    def row(document: Document, now: datetime) -> list[str]:
        subscriptions = _subscriptions(_map(document.get(insight_key)))
        last = subscriptions[-1] if subscriptions else {}
        version = _map(last.get("version"))
        return [
            str(document.get("name", "")),
            "Online" if _online(subscriptions) else "Offline",
            *_times(last, now),
            *_sums(subscriptions),
            str(_map(version.get("kumaDp")).get("version", "")),
            str(_map(version.get("envoy")).get("version", "")),
        ]

    return row


zone_ingress_row = _zone_proxy_row("zoneIngressInsight")
zone_egress_row = _zone_proxy_row("zoneEgressInsight")


@dataclass(frozen=True)
class Inspected:
    path: str
    what: str
    headers: list[str]
    row: RowFn


#: ``kumactl inspect <TYPE>`` for zones and zone proxies (Kuma's aliases included).
INSPECTED = {
    "zones": Inspected("zones+insights", "ZoneOverview", ZONE_HEADERS, zone_row),
    "zoneingresses": Inspected(
        "zoneingresses+insights", "ZoneIngressOverview", ZONE_PROXY_HEADERS, zone_ingress_row
    ),
    "zoneegresses": Inspected(
        "zoneegressoverviews", "ZoneEgressOverview", ZONE_PROXY_HEADERS, zone_egress_row
    ),
}
ALIASES = {"zoneingresses": ["zone-ingresses"], "zoneegresses": ["zone-egresses"]}


def inspect(session: Session, what: str, output: str) -> None:
    inspected = INSPECTED[what]
    total, items = list_all(session, f"/{inspected.path}", [], inspected.what)
    if output != "table":
        print_document(session, {"total": total, "items": items, "next": None}, output)
        return
    rows = views.rows(inspected.row, items, session.now())
    session.stdout.write(table.render(inspected.headers, rows))

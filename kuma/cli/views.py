"""Table rows of kumactl's ``get`` and ``inspect dataplanes``, from the API's JSON documents,
with Kuma's columns and cell values (``app/kumactl/cmd/get/table_printer.go``,
``app/kumactl/cmd/inspect/inspect_dataplanes.go``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from . import table

Document = Mapping[str, Any]
RowFn = Callable[[Document, datetime], list[str]]

SERVICE_TAG = "kuma.io/service"


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _age(document: Document, now: datetime) -> str:
    moment = table.parse_time(document.get("modificationTime"))
    return table.duration(now - moment) if moment is not None else "never"


# --- get -------------------------------------------------------------------------------------


def _enabled_backend(section: Mapping[str, Any]) -> str:
    """``type/name`` of the section's ``enabledBackend``, or ``off``."""
    enabled = section.get("enabledBackend")
    if not enabled:
        return "off"
    for backend in _list(section.get("backends")):
        if _map(backend).get("name") == enabled:
            return f"{backend.get('type', '')}/{enabled}"
    return f"/{enabled}"


def _backends(section: object) -> str:
    """Every backend as ``type/name``, comma separated; ``off`` when none."""
    if not isinstance(section, Mapping):
        return "off"
    names = [
        f"{_map(b).get('type', '')}/{_map(b).get('name', '')}"
        for b in _list(section.get("backends"))
    ]
    return ", ".join(names) or "off"


def mesh_row(document: Document, now: datetime) -> list[str]:
    routing = _map(document.get("routing"))
    return [
        str(document.get("name", "")),
        _enabled_backend(_map(document.get("mtls"))),
        _enabled_backend(_map(document.get("metrics"))),
        _backends(document.get("logging")),
        _backends(document.get("tracing")),
        "on" if routing.get("localityAwareLoadBalancing") else "off",
        "on" if routing.get("zoneEgress") else "off",
        _age(document, now),
    ]


def tag_set(networking: Mapping[str, Any]) -> str:
    """Kuma's MultiValueTagSet string: ``key=v1,v2`` per tag of every inbound and the gateway,
    values and tags sorted, space separated."""
    tags: dict[str, set[str]] = {}
    sources = [_map(i).get("tags") for i in _list(networking.get("inbound"))]
    sources.append(_map(networking.get("gateway")).get("tags"))
    for source in sources:
        for key, value in _map(source).items():
            tags.setdefault(str(key), set()).add(str(value))
    return " ".join(sorted(f"{key}={','.join(sorted(values))}" for key, values in tags.items()))


def dataplane_row(document: Document, now: datetime) -> list[str]:
    networking = _map(document.get("networking"))
    address = networking.get("advertisedAddress") or networking.get("address") or ""
    return [
        str(document.get("mesh", "")),
        str(document.get("name", "")),
        tag_set(networking),
        str(address),
        _age(document, now),
    ]


def external_service_row(document: Document, now: datetime) -> list[str]:
    """Kuma's columns MESH NAME TAGS ADDRESS AGE (the Dataplane's headers): its tags as
    ``key=value``, sorted, space separated."""
    tags = _map(document.get("tags"))
    return [
        str(document.get("mesh", "")),
        str(document.get("name", "")),
        " ".join(sorted(f"{key}={value}" for key, value in tags.items())),
        str(_map(document.get("networking")).get("address", "")),
        _age(document, now),
    ]


def secret_row(document: Document, now: datetime) -> list[str]:
    return [str(document.get("mesh", "")), str(document.get("name", "")), _age(document, now)]


def global_row(document: Document, now: datetime) -> list[str]:
    return [str(document.get("name", "")), _age(document, now)]


MESH_HEADERS = ["NAME", "mTLS", "METRICS", "LOGGING", "TRACING", "LOCALITY", "ZONEEGRESS", "AGE"]
DATAPLANE_HEADERS = ["MESH", "NAME", "TAGS", "ADDRESS", "AGE"]
GLOBAL_HEADERS = ["NAME", "AGE"]
SECRET_HEADERS = ["MESH", "NAME", "AGE"]
#: Every targetRef policy kind (Kuma's generic table printer for plugin policies).
POLICY_HEADERS = ["MESH", "NAME", "AGE"]


def policy_row(document: Document, now: datetime) -> list[str]:
    return [str(document.get("mesh", "")), str(document.get("name", "")), _age(document, now)]


# --- inspect dataplanes ----------------------------------------------------------------------

OVERVIEW_HEADERS = [
    "MESH",
    "NAME",
    "TAGS",
    "STATUS",
    "LAST CONNECTED AGO",
    "LAST UPDATED AGO",
    "TOTAL UPDATES",
    "TOTAL ERRORS",
    "CERT REGENERATED AGO",
    "CERT EXPIRATION",
    "CERT REGENERATIONS",
    "CERT BACKEND",
    "SUPPORTED CERT BACKENDS",
    "KUMA-DP VERSION",
    "ENVOY VERSION",
    "DEPENDENCIES VERSIONS",
    "NOTES",
]


def number(value: object) -> int:
    # uint64 counters arrive as strings in protobuf JSON, as numbers from other producers.
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, str | float):
        try:
            return int(value)
        except ValueError:
            return 0
    return 0


def status(networking: Mapping[str, Any], insight: Mapping[str, Any]) -> tuple[str, list[str]]:
    """Kuma's DataplaneOverview status: Online, Offline or Partially degraded, and the notes
    naming the inbounds that are not ready."""
    online = any(
        _map(s).get("connectTime") and not _map(s).get("disconnectTime")
        for s in _list(insight.get("subscriptions"))
    )
    inbounds = [_map(i) for i in _list(networking.get("inbound"))]
    notes = [
        f"inbound[port={i.get('port', 0)},svc={_map(i.get('tags')).get(SERVICE_TAG, '')}]"
        " is not ready"
        for i in inbounds
        if _map(i.get("health")).get("ready") is False or i.get("state") == "NotReady"
    ]
    all_offline = len(notes) == len(inbounds)
    all_online = not notes
    if networking.get("gateway") is not None:
        all_offline, all_online = False, True
    if not online or all_offline:
        return "Offline", notes
    if not all_online:
        return "Partially degraded", notes
    return "Online", []


def overview_row(document: Document, now: datetime) -> list[str]:
    networking = _map(_map(document.get("dataplane")).get("networking"))
    insight = _map(document.get("dataplaneInsight"))
    subscriptions = [_map(s) for s in _list(insight.get("subscriptions"))]
    last = subscriptions[-1] if subscriptions else {}
    last_status = _map(last.get("status"))
    sent = sum(
        number(_map(_map(s.get("status")).get("total")).get("responsesSent")) for s in subscriptions
    )
    rejected = sum(
        number(_map(_map(s.get("status")).get("total")).get("responsesRejected"))
        for s in subscriptions
    )
    state, notes = status(networking, insight)
    mtls = insight.get("mTLS")
    cert = _map(mtls)
    version = _map(last.get("version"))
    dependencies = ", ".join(
        f"{name}: {value}" for name, value in sorted(_map(version.get("dependencies")).items())
    )
    return [
        str(document.get("mesh", "")),
        str(document.get("name", "")),
        tag_set(networking),
        state,
        table.ago(table.parse_time(last.get("connectTime")), now),
        table.ago(table.parse_time(last_status.get("lastUpdateTime")), now),
        str(sent),
        str(rejected),
        table.ago(table.parse_time(cert.get("lastCertificateRegeneration")), now),
        table.date(table.parse_time(cert.get("certificateExpirationTime")), now),
        str(number(cert.get("certificateRegenerations"))),
        str(cert.get("issuedBackend", "")) if isinstance(mtls, Mapping) else "-",
        ",".join(str(b) for b in _list(cert.get("supportedBackends"))),
        str(_map(version.get("kumaDp")).get("version", "")),
        str(_map(version.get("envoy")).get("version", "")),
        dependencies or "-",
        ";".join(notes),
    ]


def rows(fn: RowFn, documents: Sequence[Document], now: datetime) -> list[list[str]]:
    return [fn(document, now) for document in documents]

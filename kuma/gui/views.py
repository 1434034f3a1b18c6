"""The documents the GUI's pages read: built from the catalog and the insights, never shipping
more than a page.

Status rules (Kuma's): a proxy is *online* when one of its insight's subscriptions is connected
and not disconnected. A service instance is an inbound (or a gateway) carrying the service's
``kuma.io/service`` tag; it is *healthy* when its proxy is online and the inbound is ready. A
service is ``online`` when every instance is healthy, ``offline`` when none is, else
``partially degraded``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kuma.resources import Dataplane, StoredResource, encode_yaml, to_document

from .catalog import GuiCatalog

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
STATUSES = ("online", "offline")


class Status(Protocol):
    """:class:`~.status.ProxyStatus`: online or not (cheap), and the insight JSON (not)."""

    def online(self, mesh: str, name: str) -> bool: ...

    def insight(self, mesh: str, name: str) -> Mapping[str, Any] | None: ...


def _latest(insight: Mapping[str, Any] | None) -> Mapping[str, Any]:
    subscriptions = insight.get("subscriptions", ()) if insight else ()
    return subscriptions[-1] if subscriptions else {}


def _count(stats: Mapping[str, Any], key: str) -> int:
    return int(stats.get(key, 0))


# --- Dataplanes ----------------------------------------------------------------------------------


def _services(dataplane: Dataplane) -> list[str]:
    return [s for s in dataplane.services if s]


def _tag_sources(dataplane: Dataplane) -> list[Mapping[str, str]]:
    """The tag sets of the proxy: each inbound's, and the gateway's."""
    networking = dataplane.networking
    if networking is None:
        return []
    sources: list[Mapping[str, str]] = [i.tags for i in networking.inbound]
    if networking.gateway is not None:
        sources.append(networking.gateway.tags)
    return sources


def _tags(dataplane: Dataplane) -> dict[str, list[str]]:
    """Every tag of the proxy's inbounds (or gateway), values deduplicated in order."""
    merged: dict[str, list[str]] = {}
    for tags in _tag_sources(dataplane):
        for key, value in tags.items():
            values = merged.setdefault(key, [])
            if value not in values:
                values.append(value)
    return merged


def row(stored: StoredResource, status: Status) -> dict[str, Any]:
    """One line of the Dataplane list."""
    dataplane = stored.resource
    assert isinstance(dataplane, Dataplane)
    networking = dataplane.networking
    insight = status.insight(dataplane.mesh, dataplane.name)
    latest = _latest(insight)
    total = latest.get("status", {}).get("total", {})
    online = status.online(dataplane.mesh, dataplane.name)
    return {
        "mesh": dataplane.mesh,
        "name": dataplane.name,
        "status": "online" if online else "offline",
        "address": networking.address if networking is not None else "",
        "services": _services(dataplane),
        "tags": _tags(dataplane),
        "gateway": networking.gateway.type if networking and networking.gateway else None,
        "inbounds": len(networking.inbound) if networking is not None else 0,
        "outbounds": len(networking.outbound) if networking is not None else 0,
        "connected": latest.get("connectTime"),
        "disconnected": latest.get("disconnectTime"),
        "responses": _count(total, "responsesSent"),
        "rejected": _count(total, "responsesRejected"),
        "envoy": latest.get("version", {}).get("envoy", {}).get("version", ""),
    }


@dataclass(frozen=True)
class DataplaneFilter:
    """``name`` substring; ``tags`` as ``key`` (present) or ``key:value`` (value contains);
    ``status`` online/offline (the only filter that reads insights, so it is checked last)."""

    name: str = ""
    tags: tuple[tuple[str, str | None], ...] = ()
    status: str = ""

    @classmethod
    def parse(cls, name: str, tags: Iterable[str], status: str) -> DataplaneFilter:
        if status and status not in STATUSES:
            raise ValueError(f"status: expected one of {', '.join(STATUSES)}, got {status!r}")
        parsed: list[tuple[str, str | None]] = []
        for raw in tags:
            key, sep, value = raw.strip().partition(":")
            if key:
                parsed.append((key, value if sep else None))
        return cls(name.strip(), tuple(parsed), status)

    def _static(self, dataplane: Dataplane) -> bool:
        if self.name and self.name not in dataplane.name:
            return False
        if self.tags:
            sources = _tag_sources(dataplane)
            for key, wanted in self.tags:
                if not any(
                    key in tags and (wanted is None or wanted in tags[key]) for tags in sources
                ):
                    return False
        return True

    def select(self, dataplanes: Iterable[StoredResource], status: Status) -> list[StoredResource]:
        chosen = [s for s in dataplanes if self._static(s.resource)]  # type: ignore[arg-type]
        if self.status:
            want_online = self.status == "online"
            chosen = [
                s
                for s in chosen
                if status.online(s.resource.mesh_name, s.resource.name) == want_online
            ]
        return chosen

    @property
    def active(self) -> bool:
        return bool(self.name or self.tags or self.status)


def dataplane_page(
    catalog: GuiCatalog,
    status: Status,
    mesh: str,
    where: DataplaneFilter,
    offset: int,
    size: int,
) -> dict[str, Any]:
    everything = catalog.dataplanes(mesh)
    if where.active:
        matching: Sequence[StoredResource] = where.select(everything, status)
    else:
        matching = everything
    total = len(matching)
    # A sorted dict's values view slices by index without copying the rest.
    page = matching[offset : offset + size]
    return {
        "mesh": mesh,
        "total": total,
        "inMesh": len(everything),
        "offset": offset,
        "size": size,
        "items": [row(stored, status) for stored in page],
    }


def dataplane_detail(
    stored: StoredResource, status: Status, nacks: list[dict[str, Any]]
) -> dict[str, Any]:
    dataplane = stored.resource
    assert isinstance(dataplane, Dataplane)
    networking = dataplane.networking
    document = to_document(dataplane, stored.meta)
    insight = status.insight(dataplane.mesh, dataplane.name) or {}
    online = status.online(dataplane.mesh, dataplane.name)
    inbounds = []
    outbounds = []
    if networking is not None:
        inbounds = [
            {
                "port": i.port,
                "servicePort": i.effective_service_port,
                "address": i.effective_address(networking),
                "service": i.service,
                "protocol": i.protocol,
                "tags": i.tags,
                "ready": i.is_healthy,
            }
            for i in networking.inbound
        ]
        outbounds = [
            {"port": o.port, "address": o.effective_address, "service": o.service, "tags": o.tags}
            for o in networking.outbound
        ]
    return {
        "mesh": dataplane.mesh,
        "name": dataplane.name,
        "status": "online" if online else "offline",
        "labels": dataplane.labels,
        "creationTime": document.get("creationTime"),
        "modificationTime": document.get("modificationTime"),
        "address": networking.address if networking is not None else "",
        "gateway": (document.get("networking") or {}).get("gateway"),
        "inbounds": inbounds,
        "outbounds": outbounds,
        "yaml": encode_yaml([stored]),
        "insight": dict(insight),
        "nacks": nacks,
    }


# --- meshes and services -------------------------------------------------------------------------


def _service_instances(
    dataplanes: Iterable[StoredResource], status: Status
) -> dict[str, list[int]]:
    """service -> [instances, healthy instances, proxies online]."""
    services: dict[str, list[int]] = {}
    for stored in dataplanes:
        dataplane = stored.resource
        assert isinstance(dataplane, Dataplane)
        networking = dataplane.networking
        if networking is None:
            continue
        online = status.online(dataplane.mesh, dataplane.name)
        if networking.gateway is not None:
            instances = [(networking.gateway.service, True)]
        else:
            instances = [(i.service, i.is_healthy) for i in networking.inbound]
        for service, ready in instances:
            counts = services.setdefault(service, [0, 0, 0])
            counts[0] += 1
            counts[1] += int(online and ready)
            counts[2] += int(online)
    return services


def service_status(instances: int, healthy: int) -> str:
    if instances and healthy == instances:
        return "online"
    if healthy == 0:
        return "offline"
    return "partially degraded"


def service_page(
    catalog: GuiCatalog, status: Status, mesh: str, name: str, offset: int, size: int
) -> dict[str, Any]:
    counted = _service_instances(catalog.dataplanes(mesh), status)
    names = sorted(s for s in counted if name in s)
    items = []
    for service in names[offset : offset + size]:
        instances, healthy, online = counted[service]
        items.append(
            {
                "name": service,
                "status": service_status(instances, healthy),
                "instances": instances,
                "healthy": healthy,
                "online": online,
            }
        )
    return {"mesh": mesh, "total": len(names), "offset": offset, "size": size, "items": items}


def mesh_summary(catalog: GuiCatalog, status: Status, mesh: str) -> dict[str, Any]:
    dataplanes = catalog.dataplanes(mesh)
    online = sum(1 for s in dataplanes if status.online(s.resource.mesh_name, s.resource.name))
    stored = catalog.mesh(mesh)
    services = {svc for s in dataplanes for svc in _services(s.resource)}  # type: ignore[arg-type]
    policies = catalog.policies(mesh)
    summary: dict[str, Any] = {
        "name": mesh,
        "exists": stored is not None,
        "policies": {kind: len(names) for kind, names in policies.items()},
        "dataplanes": {
            "total": len(dataplanes),
            "online": online,
            "offline": len(dataplanes) - online,
        },
        "services": len(services),
    }
    if stored is not None:
        document = to_document(stored.resource, stored.meta)
        summary["creationTime"] = document.get("creationTime")
        summary["mtls"] = bool((document.get("mtls") or {}).get("enabledBackend"))
    return summary


def policy_list(catalog: GuiCatalog, mesh: str, shown: int = 20) -> dict[str, Any]:
    """The mesh's policies by kind: how many, and the first ``shown`` names of each."""
    return {
        "mesh": mesh,
        "kinds": [
            {"kind": kind, "total": len(names), "names": names[:shown]}
            for kind, names in catalog.policies(mesh).items()
        ],
    }

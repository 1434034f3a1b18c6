"""Transparent proxies reach ExternalServices at VIPs, as Kuma v2.7 does: the service's VIP
answers ``<service>.mesh`` with outbounds on the ExternalService's port and on the VIP port
(80); the host name gets a VIP of its own answering that name (unless
``disableHostDNSEntry``); an IP host is captured on the real address. Kuma's shapes are
``pkg/dns/vips_allocator.go`` (the entries) and ``pkg/xds/topology/dns.go`` (the outbounds)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

from kuma.cp.vips import VipAllocator, allocate, hashed_vip
from kuma.resources import Dataplane, ExternalService, MeshVips, ResourceKey, from_document
from kuma.resources.validation import validate
from kuma.store import NotFoundError, Operation, ResourceEvent
from kuma.store.memory import MemoryStore
from kuma.xds import types
from kuma.xds.engine.mesh_state import MeshState
from kuma.xds.generate import StaticMeshView, generate_proxy, names, outbounds_of
from kuma.xds.generate.destination import Destination
from tests.xds.test_engine_invariant import _META, EngineMachineWithExternalServices
from tests.xds.test_generate import to_plain

SERVICE_VIPS = {"web": "240.0.0.1", "httpbin": "240.0.0.2", "legacy_db": "240.0.0.3"}
HOST_VIPS = {"httpbin.org": "240.0.1.1", "web.example": "240.0.1.2"}


def _external(
    name: str, service: str, address: str, *, disable_dns: bool = False, mesh: str = "default"
) -> ExternalService:
    networking: dict[str, Any] = {"address": address}
    if disable_dns:
        networking["disableHostDNSEntry"] = True
    resource = from_document(
        {
            "type": "ExternalService",
            "mesh": mesh,
            "name": name,
            "networking": networking,
            "tags": {"kuma.io/service": service},
        }
    )
    assert isinstance(resource, ExternalService)
    return resource


def _dataplane(
    name: str, address: str, service: str, outbound: list[dict[str, Any]] | None = None, **tp: Any
) -> Dataplane:
    networking: dict[str, Any] = {
        "address": address,
        "inbound": [{"port": 8080, "tags": {"kuma.io/service": service}}],
        "outbound": outbound or [],
        "transparentProxying": {"redirectPortInbound": 15006, "redirectPortOutbound": 15001, **tp},
    }
    resource = from_document(
        {"type": "Dataplane", "mesh": "default", "name": name, "networking": networking}
    )
    assert isinstance(resource, Dataplane)
    return resource


EXTERNALS = [
    _external("httpbin", "httpbin", "httpbin.org:443"),
    # A second port of the same service and host: Kuma keeps the service entry's lowest port,
    # and the host entry gets both.
    _external("httpbin-2", "httpbin", "httpbin.org:8443"),
    _external("db", "legacy_db", "10.1.0.1:5432"),
    _external("quiet", "quiet", "quiet.example:80", disable_dns=True),
    # Dataplanes provide "web" too: their (port 0) service entry comes first.
    _external("web-outside", "web", "web.example:8443"),
]


def _view(consumer: Dataplane) -> StaticMeshView:
    vips = {**SERVICE_VIPS, "quiet": "240.0.0.4"}
    web = _dataplane("web-1", "10.0.0.1", "web")
    return StaticMeshView(
        [web, consumer], vips=vips, external_services=EXTERNALS, host_vips=HOST_VIPS
    )


def _dns_table(listeners: dict[str, Any]) -> dict[str, list[str]]:
    config = to_plain(listeners[names.DNS_LISTENER])["listenerFilters"][0]["typedConfig"]
    return {
        entry["name"]: entry["endpoint"]["addressList"]["address"]
        for entry in config["serverConfig"]["inlineDnsTable"]["virtualDomains"]
    }


def test_vip_outbounds_as_kuma() -> None:
    consumer = _dataplane("api-1", "10.0.0.2", "api")
    view = _view(consumer)
    assert sorted(outbounds_of(consumer, view)) == sorted(
        [
            ("240.0.0.1", 80, Destination("web")),
            # httpbin's service entry: its lowest port, and the VIP port.
            ("240.0.0.2", 443, Destination("httpbin")),
            ("240.0.0.2", 80, Destination("httpbin")),
            # legacy_db: the service VIP (port and VIP port); the IP host on itself, no VIP port.
            ("240.0.0.3", 5432, Destination("legacy_db")),
            ("240.0.0.3", 80, Destination("legacy_db")),
            ("10.1.0.1", 5432, Destination("legacy_db")),
            # quiet: port 80 is the VIP port; no host entry.
            ("240.0.0.4", 80, Destination("quiet")),
            # Host entries: both ports, plus the VIP port.
            ("240.0.1.1", 443, Destination("httpbin")),
            ("240.0.1.1", 8443, Destination("httpbin")),
            ("240.0.1.1", 80, Destination("httpbin")),
            ("240.0.1.2", 8443, Destination("web")),
            ("240.0.1.2", 80, Destination("web")),
        ]
    )
    resources = generate_proxy(consumer, view, 9901, dns_port=15053)
    listeners = resources[types.LISTENER]
    assert "outbound:240.0.1.1:443" in listeners
    assert "outbound:10.1.0.1:5432" in listeners
    # The ExternalService's cluster, reached from its VIPs as from an explicit outbound.
    assert "httpbin" in resources[types.CLUSTER]
    assert _dns_table(listeners) == {
        "web.mesh": ["240.0.0.1", "::ffff:f000:1"],
        "httpbin.mesh": ["240.0.0.2", "::ffff:f000:2"],
        "legacy_db.mesh": ["240.0.0.3", "::ffff:f000:3"],
        "legacy.db.mesh": ["240.0.0.3", "::ffff:f000:3"],
        "quiet.mesh": ["240.0.0.4", "::ffff:f000:4"],
        "httpbin.org": ["240.0.1.1", "::ffff:f000:101"],
        "web.example": ["240.0.1.2", "::ffff:f000:102"],
    }


def test_reachable_services_and_explicit_outbounds_on_a_host_vip() -> None:
    explicit = {"address": "240.0.1.2", "port": 9000, "tags": {"kuma.io/service": "web"}}
    consumer = _dataplane("api-1", "10.0.0.2", "api", [explicit], reachableServices=["httpbin"])
    found = outbounds_of(consumer, _view(consumer))
    assert {d.service for _, _, d in found} == {"httpbin"}
    # The explicit outbound on a host VIP is dropped, as Kuma drops those on generated VIPs.
    assert ("240.0.1.2", 9000, Destination("web")) not in found
    resources = generate_proxy(consumer, _view(consumer), 9901, dns_port=15053)
    # Names only for the addresses the proxy has outbounds on.
    assert sorted(_dns_table(resources[types.LISTENER])) == ["httpbin.mesh", "httpbin.org"]


def test_allocation_of_hosts_is_stable_and_released_with_the_last_external_service() -> None:
    async def stored(store: MemoryStore, check: Callable[[MeshVips], bool]) -> MeshVips:
        """The stored allocation once ``check`` holds (looked at after every store event)."""
        key = ResourceKey(MeshVips.TYPE, "", "default")
        with anyio.fail_after(10):
            async with store.watch() as events:
                async for _ in events:
                    try:
                        found = (await store.get(key)).resource
                    except NotFoundError:
                        continue
                    assert isinstance(found, MeshVips)
                    if check(found):
                        return found
        raise AssertionError("the store closed")

    async def scenario() -> None:
        store = MemoryStore()
        for resource in EXTERNALS[:4]:
            await store.create(resource)
        async with anyio.create_task_group() as tg:
            await tg.start(VipAllocator(store).run)
            first = await stored(store, lambda _: True)
            assert not validate(first)
            assert set(first.vips) == {"httpbin", "legacy_db", "quiet"}
            # An IP host needs no VIP; quiet's host is disabled.
            assert set(first.hosts) == {"httpbin.org"}
            assert first.hosts["httpbin.org"] == hashed_vip("default", "httpbin.org", kind="host")
            assert first.hosts["httpbin.org"] not in first.vips.values()

            await store.delete(ResourceKey(ExternalService.TYPE, "default", "httpbin"))
            await store.create(_external("other", "other", "other.example:80"))
            now = await stored(store, lambda found: "other.example" in found.hosts)
            # httpbin-2 still names the service and the host: nothing moved.
            assert now.hosts["httpbin.org"] == first.hosts["httpbin.org"]
            assert now.vips["httpbin"] == first.vips["httpbin"]

            await store.delete(ResourceKey(ExternalService.TYPE, "default", "httpbin-2"))
            now = await stored(store, lambda found: "httpbin.org" not in found.hosts)
            assert "httpbin" not in now.vips
            tg.cancel_scope.cancel()

    anyio.run(scenario)


def test_allocate_never_hands_out_a_reserved_vip() -> None:
    taken = hashed_vip("default", "a.example", kind="host")
    assert allocate("default", {}, ["a.example"], reserved=[taken], kind="host") == {
        "a.example": hashed_vip("default", "a.example", 1, kind="host")
    }


@pytest.mark.parametrize(
    ("hosts", "violation"),
    [
        ({"not a host": "240.0.1.1"}, ('hosts["not a host"]', "host name: must be a DNS name")),
        ({"a.example": "240.0.0.1"}, ('hosts["a.example"]', 'duplicates the VIP of "web"')),
    ],
)
def test_host_vips_validated(hosts: dict[str, str], violation: tuple[str, str]) -> None:
    found = validate(MeshVips(name="default", vips={"web": "240.0.0.1"}, hosts=hosts))
    assert [(v.field, v.message) for v in found] == [violation]


def test_engine_reassembles_transparent_proxies_only() -> None:
    """An ExternalService and its VIPs re-assemble the mesh's transparent proxies (the VIP
    path), and nobody else; each step checked against generation from scratch."""
    _engine_scenario()


def test_an_external_service_change_not_settling_vips_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A mutant engine whose ExternalService handler leaves the VIP outbounds as they were."""
    monkeypatch.setattr(MeshState, "externals_changed", lambda self: None)
    with pytest.raises(AssertionError):
        _engine_scenario()


def _engine_scenario() -> None:
    machine = EngineMachineWithExternalServices()
    machine._put(from_document({"type": "Mesh", "name": "default"}))  # type: ignore[arg-type]
    machine._put(_dataplane("web-1", "10.0.0.1", "web"))
    plain = from_document(
        {
            "type": "Dataplane",
            "mesh": "default",
            "name": "api-1",
            "networking": {
                "address": "10.0.0.2",
                "inbound": [{"port": 8080, "tags": {"kuma.io/service": "api"}}],
            },
        }
    )
    machine._put(plain)  # type: ignore[arg-type]
    machine.apply_all()
    machine._put(_external("httpbin", "httpbin", "httpbin.org:443"))
    machine.apply_all()
    machine._put(
        MeshVips(
            name="default",
            vips={"web": "240.0.0.1", "api": "240.0.0.5", "httpbin": "240.0.0.2"},
            hosts={"httpbin.org": "240.0.1.1"},
        )
    )
    machine.apply_all()
    assert machine.engine.last_batch.proxies_assembled == 1  # web-1 (transparent), not api-1
    listeners = machine.subscriptions["default.web-1"].resources(types.LISTENER)
    assert {"outbound:240.0.0.2:443", "outbound:240.0.1.1:443", "outbound:240.0.1.1:80"} <= set(
        listeners
    )
    # The port moves: the transparent proxy follows, the other is not re-assembled.
    machine._put(_external("httpbin", "httpbin", "httpbin.org:8443"))
    machine.apply_all()
    assert machine.engine.last_batch.proxies_assembled == 1
    listeners = machine.subscriptions["default.web-1"].resources(types.LISTENER)
    assert "outbound:240.0.1.1:8443" in listeners
    assert "outbound:240.0.1.1:443" not in listeners
    gone = machine.stored.pop(("ExternalService", "default", "httpbin"))
    machine.pending.append(ResourceEvent(Operation.DELETE, gone, _META, 0))
    machine.apply_all()
    listeners = machine.subscriptions["default.web-1"].resources(types.LISTENER)
    assert not [name for name in listeners if "240.0.1.1" in name or "240.0.0.2" in name]

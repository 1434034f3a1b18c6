"""The engine serves the VIPs of the stored MeshVips allocation, and only those."""

from __future__ import annotations

from datetime import UTC, datetime

from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.extensions.filters.udp.dns_filter.v3.dns_filter_pb2 import DnsFilterConfig

from kuma.resources import Dataplane, MeshVips, ResourceMeta, from_document
from kuma.store import Operation, ResourceEvent
from kuma.xds.engine import Engine
from kuma.xds.engine.watches import Subscription
from kuma.xds.generate import StaticMeshView, generate_proxy, names, types
from kuma.xds.proxy_metadata import NO_METADATA, ProxyMetadata

_META = ResourceMeta("1", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))


def dataplane(name: str, service: str, *, transparent: bool = False) -> Dataplane:
    networking: dict[str, object] = {
        "address": "10.0.0.1",
        "inbound": [{"port": 10000, "servicePort": 8000, "tags": {"kuma.io/service": service}}],
    }
    if transparent:
        networking["transparentProxying"] = {
            "redirectPortInbound": 15006,
            "redirectPortOutbound": 15001,
        }
    resource = from_document(
        {"type": "Dataplane", "mesh": "default", "name": name, "networking": networking}
    )
    assert isinstance(resource, Dataplane)
    return resource


def event(resource: Dataplane | MeshVips, operation: Operation = Operation.CREATE) -> ResourceEvent:
    return ResourceEvent(operation, resource, _META, 1)


def vip_listeners(engine: Engine, node_id: str) -> set[str]:
    subscription = engine.subscribe(node_id)
    try:
        names = set(subscription.resources(types.LISTENER))
    finally:
        engine.unsubscribe(subscription)
    return {n for n in names if n.startswith("outbound:240.")}


def test_no_stored_allocation_means_no_vip_outbounds() -> None:
    engine = Engine()
    engine.apply_now(
        [event(dataplane("web-1", "web", transparent=True)), event(dataplane("a", "api"))]
    )
    assert vip_listeners(engine, "default.web-1") == set()


def test_stored_vips_of_existing_services_only_and_reassembly_on_change() -> None:
    engine = Engine()
    engine.apply_now(
        [event(dataplane("web-1", "web", transparent=True)), event(dataplane("a", "api"))]
    )
    tp = engine.subscribe("default.web-1")
    plain = engine.subscribe("default.a")
    tp.take_changes()
    plain.take_changes()

    # "gone" has a VIP but no Dataplane: the allocation may lead this engine's view.
    vips = MeshVips(
        name="default", vips={"api": "240.0.0.1", "web": "240.0.0.2", "gone": "240.0.0.3"}
    )
    engine.apply_now([event(vips)])
    assert {n for n in tp.resources(types.LISTENER) if n.startswith("outbound:240.")} == {
        "outbound:240.0.0.1:80",
        "outbound:240.0.0.2:80",
    }
    assert types.LISTENER in tp.take_changes()
    # A proxy without transparent proxying is not re-assembled for VIPs.
    assert plain.take_changes() == {}

    # A moved VIP (an operator's edit) reaches the transparent proxy.
    moved = MeshVips(name="default", vips={"api": "240.0.0.9", "web": "240.0.0.2"})
    engine.apply_now([event(moved, Operation.UPDATE)])
    assert tp.take_changes()[types.LISTENER] >= {"outbound:240.0.0.1:80", "outbound:240.0.0.9:80"}

    # The same allocation again (another instance's no-op write): nothing to do.
    engine.apply_now([event(moved, Operation.UPDATE)])
    assert tp.take_changes() == {}

    # A Dataplane of "gone" appears, then its VIP is allocated: served from then on.
    engine.apply_now([event(dataplane("g", "gone"))])
    assert tp.take_changes() == {}  # "gone" has no VIP in the stored allocation any more
    engine.apply_now([event(MeshVips(name="default", vips={**moved.vips, "gone": "240.0.0.3"}))])
    assert "outbound:240.0.0.3:80" in tp.take_changes()[types.LISTENER]

    # The allocation deleted: every VIP outbound goes.
    engine.apply_now([event(moved, Operation.DELETE)])
    assert not {n for n in tp.resources(types.LISTENER) if n.startswith("outbound:240.")}
    engine.unsubscribe(tp)
    engine.unsubscribe(plain)


def test_allocations_are_per_mesh() -> None:
    engine = Engine()
    engine.apply_now(
        [
            event(dataplane("web-1", "web", transparent=True)),
            event(MeshVips(name="other", vips={"web": "240.0.0.1"})),
        ]
    )
    assert vip_listeners(engine, "default.web-1") == set()
    engine.apply_now([event(MeshVips(name="default", vips={"web": "240.0.0.7"}))])
    # Its own service too (Kuma does the same: a proxy may call its own service by VIP).
    assert vip_listeners(engine, "default.web-1") == {"outbound:240.0.0.7:80"}


def test_a_transparent_proxy_with_a_dns_port_gets_kuma_dns_and_new_vips_reach_it() -> None:
    engine = Engine()
    web = dataplane("web-1", "web", transparent=True)
    engine.apply_now([event(web), event(dataplane("a", "api"))])
    dns = ProxyMetadata(dns_port=15053)
    tp = engine.subscribe("default.web-1", dns)
    plain = engine.subscribe("default.a", dns)  # not transparent: no DNS listener
    assert names.DNS_LISTENER not in plain.resources(types.LISTENER)
    assert _dns_names(tp) == set()
    tp.take_changes()

    vips = MeshVips(name="default", vips={"api": "240.0.0.1", "web": "240.0.0.2"})
    engine.apply_now([event(vips)])
    assert names.DNS_LISTENER in tp.take_changes()[types.LISTENER]
    assert _dns_names(tp) == {"api.mesh", "web.mesh"}
    # What the engine assembled is what generation from scratch gives.
    view = StaticMeshView([web, dataplane("a", "api")], vips=vips.vips)
    scratch = generate_proxy(web, view, 9901, dns_port=15053)[types.LISTENER]
    served = tp.resources(types.LISTENER)[names.DNS_LISTENER]
    assert served.body == scratch[names.DNS_LISTENER].SerializeToString(deterministic=True)

    # A reader that is not the proxy (the served-config page) changes nothing.
    reader = engine.subscribe("default.web-1", None)
    assert names.DNS_LISTENER in reader.resources(types.LISTENER)
    engine.unsubscribe(reader)
    assert tp.take_changes() == {}
    # A second stream whose kuma-dp runs without DNS: the latest metadata wins.
    again = engine.subscribe("default.web-1", NO_METADATA)
    assert names.DNS_LISTENER not in again.resources(types.LISTENER)
    assert names.DNS_LISTENER in tp.take_changes()[types.LISTENER]


def _dns_names(subscription: Subscription) -> set[str]:
    listener = subscription.resources(types.LISTENER).get(names.DNS_LISTENER)
    if listener is None:
        return set()
    config = DnsFilterConfig()
    Listener.FromString(listener.body).listener_filters[0].typed_config.Unpack(config)
    return {d.name for d in config.server_config.inline_dns_table.virtual_domains}

"""Cross-zone endpoints (kuma/xds/generate/cross_zone.py, the engine's ZoneIngress handler):
a consumer in zone-1 reaches zone-2's services through zone-2's ingress, weighted and
prioritized as Kuma v2.7 does; a remote ingress's change re-sends only the changed services'
ClusterLoadAssignments to their consumers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.endpoint.v3.endpoint_pb2 import ClusterLoadAssignment
from envoy.extensions.transport_sockets.tls.v3.tls_pb2 import UpstreamTlsContext

from kuma.resources import Dataplane, Mesh, ResourceMeta, ZoneIngress, from_document
from kuma.store import Operation, ResourceEvent
from kuma.xds import types
from kuma.xds.engine import Engine
from kuma.xds.engine.handlers import default_handlers
from kuma.xds.engine.watches import Subscription
from kuma.xds.generate.cross_zone import remote_endpoints
from kuma.xds.generate.proxy import generate_proxy
from kuma.xds.generate.view import StaticMeshView

_META = ResourceMeta("1", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
STRICT = {"enabledBackend": "ca", "backends": [{"name": "ca", "type": "builtin"}]}


def mesh(*, mtls: bool = True, aware: bool = False) -> Mesh:
    doc: dict[str, Any] = {"type": "Mesh", "name": "default"}
    if mtls:
        doc["mtls"] = STRICT
    if aware:
        doc["routing"] = {"localityAwareLoadBalancing": True}
    resource = from_document(doc)
    assert isinstance(resource, Mesh)
    return resource


def dataplane(name: str, service: str, address: str, outbounds: tuple[Any, ...] = ()) -> Dataplane:
    resource = from_document(
        {
            "type": "Dataplane",
            "mesh": "default",
            "name": name,
            "networking": {
                "address": address,
                "inbound": [
                    {
                        "port": 10000,
                        "servicePort": 8000,
                        "tags": {"kuma.io/service": service, "kuma.io/zone": "zone-1"},
                    }
                ],
                "outbound": [
                    {"port": 20000 + i, "tags": {"kuma.io/service": s, **dict(extra)}}
                    for i, (s, extra) in enumerate(outbounds)
                ],
            },
        }
    )
    assert isinstance(resource, Dataplane)
    return resource


def ingress(
    name: str,
    zone: str,
    services: dict[str, int],
    *,
    address: str | None = "192.0.2.2",
    port: int = 10001,
    mesh: str = "default",
    version: str | None = None,
) -> ZoneIngress:
    networking: dict[str, Any] = {"address": "10.9.0.1", "port": 10001}
    if address is not None:
        networking |= {"advertisedAddress": address, "advertisedPort": port}
    available = []
    for service, instances in services.items():
        tags = {"kuma.io/service": service, "kuma.io/zone": zone}
        if version is not None:
            tags["version"] = version
        available.append({"mesh": mesh, "instances": instances, "tags": tags})
    resource = from_document(
        {
            "type": "ZoneIngress",
            "name": name,
            "zone": zone,
            "networking": networking,
            "availableServices": available,
        }
    )
    assert isinstance(resource, ZoneIngress)
    return resource


def put(*resources: Any, operation: Operation = Operation.CREATE) -> list[ResourceEvent]:
    return [ResourceEvent(operation, r, _META, 1) for r in resources]


WEB = dataplane("web-1", "web", "10.0.0.1", (("backend", ()), ("db", ())))
DB_ONLY = dataplane("api-1", "api", "10.0.0.4", (("db", ()),))
LOCAL = [dataplane(f"backend-{i}", "backend", f"10.0.0.{i + 1}") for i in (1, 2)]


def cla_of(resources: Any, name: str) -> ClusterLoadAssignment:
    """A ClusterLoadAssignment from generate_proxy's messages or a subscription's bodies."""
    value = resources[name]
    if isinstance(value, ClusterLoadAssignment):
        return value
    parsed = ClusterLoadAssignment()
    parsed.ParseFromString(value.body)
    return parsed


def groups(cla: ClusterLoadAssignment) -> list[tuple[str, int, list[tuple[str, int, int]]]]:
    """(zone, priority, [(address, port, weight)]) per locality."""
    return [
        (
            group.locality.zone,
            group.priority,
            [
                (
                    e.endpoint.address.socket_address.address,
                    e.endpoint.address.socket_address.port_value,
                    e.load_balancing_weight.value,
                )
                for e in group.lb_endpoints
            ],
        )
        for group in cla.endpoints
    ]


def from_scratch(
    the_mesh: Mesh, ingresses: list[ZoneIngress], dataplanes: list[Dataplane] | None = None
) -> Any:
    dataplanes = [WEB, *LOCAL] if dataplanes is None else dataplanes
    view = StaticMeshView(
        dataplanes, the_mesh, remote=remote_endpoints(ingresses, "zone-1"), local_zone="zone-1"
    )
    return generate_proxy(WEB, view, 9901)


def test_remote_ingresses_are_endpoints_weighted_as_kuma() -> None:
    ingresses = [
        ingress("zi-2a", "zone-2", {"backend": 3}),
        # Behind the same load balancer: only the first by name that lists services counts.
        ingress("zi-2b", "zone-2", {"backend": 7}),
        # Another address of zone-2, and zone-3's: 2 more instances for local weights.
        ingress("zi-2c", "zone-2", {"backend": 1}, address="192.0.2.3"),
        ingress("zi-3", "zone-3", {"backend": 2, "db": 1}, address="192.0.2.4", port=10002),
        # Not endpoints: zone-1's own ingress, one without a public address, one without a
        # zone, another mesh's service.
        ingress("zi-1", "zone-1", {"backend": 5}, address="192.0.2.1"),
        ingress("zi-hidden", "zone-2", {"backend": 5}, address=None),
        ingress("zi-nozone", "", {"backend": 5}, address="192.0.2.9"),
        ingress("zi-other", "zone-4", {"backend": 5}, address="192.0.2.8", mesh="other"),
    ]
    resources = from_scratch(mesh(), ingresses)
    # Local endpoints weigh the remote address:port pairs listing services (zi-2a, zi-2c,
    # zi-3, zi-other: 4); each ingress weighs its instances; all at priority 0 (Kuma without
    # locality-aware load balancing).
    assert groups(cla_of(resources[types.ENDPOINT], "backend")) == [
        ("zone-1", 0, [("10.0.0.2", 10000, 4), ("10.0.0.3", 10000, 4)]),
        ("zone-2", 0, [("192.0.2.2", 10001, 3), ("192.0.2.3", 10001, 1)]),
        ("zone-3", 0, [("192.0.2.4", 10002, 2)]),
    ]
    # A service only other zones have: its ingress alone.
    assert groups(cla_of(resources[types.ENDPOINT], "db")) == [
        ("zone-3", 0, [("192.0.2.4", 10002, 1)])
    ]
    # Locality-aware load balancing (the Mesh's routing): other zones at priority 1.
    aware = from_scratch(mesh(aware=True), ingresses)
    assert [(z, p) for z, p, _ in groups(cla_of(aware[types.ENDPOINT], "backend"))] == [
        ("zone-1", 0),
        ("zone-2", 1),
        ("zone-3", 1),
    ]
    # Without mTLS the ingress cannot route (it reads the SNI): no remote endpoints, weight 1.
    plain = from_scratch(mesh(mtls=False), ingresses)
    assert groups(cla_of(plain[types.ENDPOINT], "backend")) == [
        ("zone-1", 0, [("10.0.0.2", 10000, 1), ("10.0.0.3", 10000, 1)])
    ]


def test_the_sni_names_what_the_ingress_routes_on() -> None:
    """The consumer's cluster originates mTLS with Kuma's SNI: ``<service>{mesh=<mesh>}`` for
    the whole service, the subset's tags added for a subset; its endpoints through the
    ingress are those whose availableServices entry carries the subset's tags."""
    web = dataplane(
        "web-1", "web", "10.0.0.1", (("backend", ()), ("backend", (("version", "v1"),)))
    )
    ingresses = [
        ingress("zi-v1", "zone-2", {"backend": 2}, version="v1"),
        ingress("zi-v2", "zone-2", {"backend": 1}, address="192.0.2.3", version="v2"),
    ]
    view = StaticMeshView(
        [web], mesh(), remote=remote_endpoints(ingresses, "zone-1"), local_zone="zone-1"
    )
    resources = generate_proxy(web, view, 9901)
    snis = {}
    for name, cluster in resources[types.CLUSTER].items():
        assert isinstance(cluster, Cluster)
        if name.startswith("backend"):
            context = UpstreamTlsContext()
            cluster.transport_socket.typed_config.Unpack(context)
            snis[name] = context.sni
            assert [ep for _, _, ep in groups(cla_of(resources[types.ENDPOINT], name))]
    subset = next(n for n in snis if n != "backend")
    assert snis == {"backend": "backend{mesh=default}", subset: "backend{mesh=default,version=v1}"}
    assert groups(cla_of(resources[types.ENDPOINT], subset)) == [
        ("zone-2", 0, [("192.0.2.2", 10001, 2)])
    ]
    assert len(groups(cla_of(resources[types.ENDPOINT], "backend"))[0][2]) == 2


def subscribed(engine: Engine, node: str) -> Subscription:
    subscription = engine.subscribe(node)
    subscription.take_changes()
    return subscription


def test_a_remote_ingress_change_resends_only_the_changed_services() -> None:
    engine = Engine(handlers=default_handlers(zone="zone-1"))
    zone_2 = ingress("zi-2", "zone-2", {"backend": 3, "db": 1})
    engine.apply_now(put(mesh(), WEB, DB_ONLY, *LOCAL, zone_2))
    web, api = subscribed(engine, "default.web-1"), subscribed(engine, "default.api-1")
    assert groups(cla_of(web.resources(types.ENDPOINT), "backend"))[1] == (
        "zone-2",
        0,
        [("192.0.2.2", 10001, 3)],
    )

    # backend's instances in zone-2 change: only backend's CLA, only to its consumer.
    stats = engine.apply_now(put(ingress("zi-2", "zone-2", {"backend": 5, "db": 1})))
    assert stats.proxies_assembled == 0
    assert web.take_changes() == {types.ENDPOINT: {"backend"}}
    assert api.take_changes() == {}
    assert groups(cla_of(web.resources(types.ENDPOINT), "backend"))[1][2] == [
        ("192.0.2.2", 10001, 5)
    ]
    # The same content again: nothing.
    engine.apply_now(put(ingress("zi-2", "zone-2", {"backend": 5, "db": 1})))
    assert web.take_changes() == {}
    assert api.take_changes() == {}
    # zone-1's own ingress is not an endpoint here.
    engine.apply_now(put(ingress("zi-1", "zone-1", {"db": 9}, address="192.0.2.1")))
    assert web.take_changes() == {}
    assert api.take_changes() == {}

    # A second remote address listing services: local endpoints now weigh 2 (every CLA).
    engine.apply_now(put(ingress("zi-3", "zone-3", {"db": 1}, address="192.0.2.4")))
    assert web.take_changes() == {types.ENDPOINT: {"backend", "db"}}
    assert api.take_changes() == {types.ENDPOINT: {"db"}}
    assert groups(cla_of(web.resources(types.ENDPOINT), "backend"))[0][2] == [
        ("10.0.0.2", 10000, 2),
        ("10.0.0.3", 10000, 2),
    ]

    # Global removes zone-2's ingress: its endpoints go, weights back to 1.
    engine.apply_now(put(zone_2, operation=Operation.DELETE))
    backend = groups(cla_of(web.resources(types.ENDPOINT), "backend"))
    assert backend == [("zone-1", 0, [("10.0.0.2", 10000, 1), ("10.0.0.3", 10000, 1)])]
    assert groups(cla_of(api.resources(types.ENDPOINT), "db")) == [
        ("zone-3", 0, [("192.0.2.4", 10001, 1)])
    ]

    # The engine's state equals a from-scratch build of the same inputs.
    ingresses = [
        ingress("zi-1", "zone-1", {"db": 9}, address="192.0.2.1"),
        ingress("zi-3", "zone-3", {"db": 1}, address="192.0.2.4"),
    ]
    expected = from_scratch(mesh(), ingresses, [WEB, DB_ONLY, *LOCAL])
    for name in ("backend", "db"):
        assert cla_of(web.resources(types.ENDPOINT), name) == cla_of(expected[types.ENDPOINT], name)


def test_a_mesh_turning_mtls_off_drops_the_remote_endpoints() -> None:
    engine = Engine(handlers=default_handlers(zone="zone-1"))
    engine.apply_now(put(mesh(), WEB, *LOCAL, ingress("zi-2", "zone-2", {"db": 2})))
    web = subscribed(engine, "default.web-1")
    assert groups(cla_of(web.resources(types.ENDPOINT), "db")) == [
        ("zone-2", 0, [("192.0.2.2", 10001, 2)])
    ]
    engine.apply_now(put(mesh(mtls=False), operation=Operation.UPDATE))
    assert groups(cla_of(web.resources(types.ENDPOINT), "db")) == []
    engine.apply_now(put(mesh(aware=True), operation=Operation.UPDATE))
    assert groups(cla_of(web.resources(types.ENDPOINT), "db")) == [
        ("zone-2", 1, [("192.0.2.2", 10001, 2)])
    ]

"""Other zones' services through the local ZoneEgress (Kuma v2.7, ``routing.zoneEgress``): a
sidecar's endpoints of a remote service are this zone's egresses (weight 1, the remote
locality), and the egress passes the TLS through by SNI to the remote ingresses (Kuma's
internal services generator: the golden ``02.internalservice-only`` is checked field by field).
Incremental: a remote ingress's change reaches the egress and the consumers of what changed."""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.extensions.transport_sockets.tls.v3.tls_pb2 import UpstreamTlsContext
from google.protobuf.json_format import MessageToDict

from kuma.resources import ExternalService, Mesh, ZoneEgress, ZoneIngress, from_document
from kuma.resources.model import SERVICE_TAG
from kuma.store import Operation
from kuma.xds import types
from kuma.xds.engine import Engine
from kuma.xds.engine.handlers import default_handlers
from kuma.xds.engine.watches import Subscription
from kuma.xds.engine.zone_egress import egress_services
from kuma.xds.generate.cross_zone import remote_endpoints
from kuma.xds.generate.egress_internal import RemoteService, remote_parts
from kuma.xds.generate.proxy import generate_proxy
from kuma.xds.generate.via_egress import EgressAddress
from kuma.xds.generate.view import StaticMeshView
from kuma.xds.generate.zone_egress import generate_zone_egress

from .test_cross_zone import (
    DB_ONLY,
    LOCAL,
    WEB,
    cla_of,
    dataplane,
    groups,
    ingress,
    put,
    subscribed,
)

STRICT = {"enabledBackend": "ca", "backends": [{"name": "ca", "type": "builtin"}]}


def routing_mesh(name: str = "default", *, zone_egress: bool = True) -> Mesh:
    resource = from_document(
        {"type": "Mesh", "name": name, "mtls": STRICT, "routing": {"zoneEgress": zone_egress}}
    )
    assert isinstance(resource, Mesh)
    return resource


def egress(name: str, address: str, port: int = 10002) -> ZoneEgress:
    resource = from_document(
        {"type": "ZoneEgress", "name": name, "networking": {"address": address, "port": port}}
    )
    assert isinstance(resource, ZoneEgress)
    return resource


def external(name: str, address: str, zone: str | None = None) -> ExternalService:
    tags = {SERVICE_TAG: name, "kuma.io/protocol": "http"}
    if zone is not None:
        tags["kuma.io/zone"] = zone
    resource = from_document(
        {
            "type": "ExternalService",
            "mesh": "default",
            "name": name,
            "networking": {"address": address},
            "tags": tags,
        }
    )
    assert isinstance(resource, ExternalService)
    return resource


def zone_2_listing(name: str, *available: dict[str, Any]) -> ZoneIngress:
    """A ZoneIngress of zone-2 at 10.0.0.254:10001 (Kuma's egress goldens) listing
    ``available``."""
    networking: dict[str, Any] = {"address": "10.0.0.254", "port": 10001}
    networking |= {"advertisedAddress": "10.0.0.254", "advertisedPort": 10001}
    resource = from_document(
        {
            "type": "ZoneIngress",
            "name": name,
            "zone": "zone-2",
            "networking": networking,
            "availableServices": list(available),
        }
    )
    assert isinstance(resource, ZoneIngress)
    return resource


def as_dict(message: Any) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=False)


def test_the_egress_matches_kumas_internal_services_golden() -> None:
    """Kuma's pkg/xds/generator/egress/testdata/02.internalservice-only (its facts)."""
    engine = Engine(handlers=default_handlers(zone="zone-1"))
    remote = zone_2_listing(
        "zone-2-zoneingress-1",
        {
            "tags": {SERVICE_TAG: "service-in-zone-2", "kuma.io/protocol": "http"},
            "instances": 3,
            "mesh": "mesh-1",
        },
    )
    engine.apply_now(put(routing_mesh("mesh-1"), egress("zoneegress-1", "192.168.0.1"), remote))
    held = subscribed(engine, ".zoneegress-1")
    clusters = held.resources(types.CLUSTER)
    assert list(clusters) == ["mesh-1:service-in-zone-2"]
    assert as_dict(Cluster.FromString(clusters["mesh-1:service-in-zone-2"].body)) == {
        "altStatName": "mesh-1_service-in-zone-2",
        "connectTimeout": "5s",
        "edsClusterConfig": {"edsConfig": {"ads": {}, "resourceApiVersion": "V3"}},
        "name": "mesh-1:service-in-zone-2",
        "type": "EDS",
    }
    metadata = {"kuma.io/protocol": "http", "mesh": "mesh-1"}
    cla = cla_of(held.resources(types.ENDPOINT), "mesh-1:service-in-zone-2")
    assert as_dict(cla) == {
        "clusterName": "mesh-1:service-in-zone-2",
        "endpoints": [
            {
                "lbEndpoints": [
                    {
                        "endpoint": {
                            "address": {
                                "socketAddress": {"address": "10.0.0.254", "portValue": 10001}
                            }
                        },
                        "loadBalancingWeight": 3,
                        "metadata": {
                            "filterMetadata": {
                                "envoy.lb": metadata,
                                "envoy.transport_socket_match": metadata,
                            }
                        },
                    }
                ]
            }
        ],
    }
    (listener,) = held.resources(types.LISTENER).values()
    tls_inspector = "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3"
    assert as_dict(Listener.FromString(listener.body)) == {
        "address": {"socketAddress": {"address": "192.168.0.1", "portValue": 10002}},
        "enableReusePort": False,
        "filterChains": [
            {
                "filterChainMatch": {
                    "serverNames": ["service-in-zone-2{mesh=mesh-1}"],
                    "transportProtocol": "tls",
                },
                "filters": [
                    {
                        "name": "envoy.filters.network.tcp_proxy",
                        "typedConfig": {
                            "@type": "type.googleapis.com/"
                            "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                            "cluster": "mesh-1:service-in-zone-2",
                            "statPrefix": "mesh-1_service-in-zone-2",
                        },
                    }
                ],
            }
        ],
        "listenerFilters": [
            {
                "name": "envoy.filters.listener.tls_inspector",
                "typedConfig": {"@type": f"{tls_inspector}.TlsInspector"},
            }
        ],
        "name": "inbound:192.168.0.1:10002",
        "trafficDirection": "INBOUND",
    }


API = DB_ONLY
EGRESS_1 = egress("egress-1", "10.0.0.9")


def sidecar_from_scratch(
    ingresses: list[ZoneIngress], egresses: list[EgressAddress], dataplanes: list[Any]
) -> Any:
    view = StaticMeshView(
        dataplanes,
        routing_mesh(),
        zone_egresses=egresses,
        remote=remote_endpoints(ingresses, "zone-1"),
        local_zone="zone-1",
    )
    return generate_proxy(WEB, view, 9901)


def egress_from_scratch(
    engine: Engine, the_egress: ZoneEgress, ingresses: list[ZoneIngress]
) -> dict[str, dict[str, bytes]]:
    """The egress built from the inputs without the engine's remote index."""
    remote = remote_endpoints(ingresses, "zone-1")
    items = [
        RemoteService(mesh, service, (), endpoints)
        for (mesh, service), endpoints in sorted(remote.by_service.items())
    ]
    parts = [remote_parts(item) for item in items]
    services, _ = egress_services(engine.inputs.meshes)
    chains = [c for p in parts for c in p.chains]
    listener, clusters = generate_zone_egress(the_egress, services, chains)
    assert listener is not None
    want: dict[str, dict[str, bytes]] = {
        types.LISTENER: {listener.name: listener.SerializeToString(deterministic=True)},
        types.CLUSTER: {},
        types.ENDPOINT: {},
    }
    for cluster in [*clusters, *(p.cluster for p in parts)]:
        want[types.CLUSTER][cluster.name] = cluster.SerializeToString(deterministic=True)
    for part in parts:
        cla = part.load_assignment
        want[types.ENDPOINT][cla.cluster_name] = cla.SerializeToString(deterministic=True)
    return want


def held_bodies(subscription: Subscription) -> dict[str, dict[str, bytes]]:
    return {
        kind: {n: r.body for n, r in subscription.resources(kind).items()}
        for kind in (types.LISTENER, types.CLUSTER, types.ENDPOINT)
    }


def test_remote_services_go_through_the_egress_and_changes_stay_local() -> None:
    engine = Engine(handlers=default_handlers(zone="zone-1"))
    zone_2 = ingress("zi-2", "zone-2", {"backend": 3, "db": 1})
    engine.apply_now(put(routing_mesh(), WEB, API, *LOCAL, zone_2, EGRESS_1))
    web, api = subscribed(engine, "default.web-1"), subscribed(engine, "default.api-1")
    box = subscribed(engine, ".egress-1")

    # web: local backends, and zone-2's through the egress (weight 1, zone-2's locality).
    assert groups(cla_of(web.resources(types.ENDPOINT), "backend")) == [
        ("zone-1", 0, [("10.0.0.2", 10000, 1), ("10.0.0.3", 10000, 1)]),
        ("zone-2", 0, [("10.0.0.9", 10002, 1)]),
    ]
    # The TLS goes to the service itself through the egress: its SNI and SAN, not the egress's.
    cluster = Cluster.FromString(web.resources(types.CLUSTER)["backend"].body)
    tls = UpstreamTlsContext()
    cluster.transport_socket.typed_config.Unpack(tls)
    assert tls.sni == "backend{mesh=default}"
    assert "spiffe://default/backend" in str(tls.common_tls_context)
    # The egress: one passthrough chain per remote service, to the ingress, weight = instances.
    assert groups(cla_of(box.resources(types.ENDPOINT), "default:backend")) == [
        ("zone-2", 0, [("192.0.2.2", 10001, 3)])
    ]
    assert held_bodies(box) == egress_from_scratch(engine, EGRESS_1, [zone_2])

    # backend's instances in zone-2: the egress's CLA changes; the sidecars' do not (weight 1
    # at the egress whatever the instances), and nobody is re-assembled but the egress.
    zone_2 = ingress("zi-2", "zone-2", {"backend": 5, "db": 1})
    stats = engine.apply_now(put(zone_2))
    assert box.take_changes() == {types.ENDPOINT: {"default:backend"}}
    assert web.take_changes() == {}
    assert api.take_changes() == {}
    assert stats.proxies_assembled == 1

    # A service only zone-2 has, that web does not call: the egress gains it, nobody else hears.
    zone_2 = ingress("zi-2", "zone-2", {"backend": 5, "db": 1, "cache": 2})
    engine.apply_now(put(zone_2))
    changes = box.take_changes()
    assert changes[types.CLUSTER] == {"default:cache"}
    assert changes[types.ENDPOINT] == {"default:cache"}
    assert web.take_changes() == {}
    assert api.take_changes() == {}

    # A second egress: the consumers' remote endpoints double; egress-1 is untouched.
    egress_2 = egress("egress-2", "10.0.0.10")
    engine.apply_now(put(egress_2))
    assert web.take_changes() == {types.ENDPOINT: {"backend", "db"}}
    assert api.take_changes() == {types.ENDPOINT: {"db"}}
    assert box.take_changes() == {}
    assert groups(cla_of(api.resources(types.ENDPOINT), "db"))[-1] == (
        "zone-2",
        0,
        [("10.0.0.10", 10002, 1), ("10.0.0.9", 10002, 1)],
    )

    # A local Dataplane moving: not the egress's business.
    moved = dataplane(LOCAL[0].name, "backend", "10.0.0.7")
    engine.apply_now(put(moved))
    assert box.take_changes() == {}

    # Equal to from-scratch builds, for the sidecars and the egress.
    dataplanes = [WEB, API, moved, LOCAL[1]]
    egresses = [EgressAddress("10.0.0.9", 10002), EgressAddress("10.0.0.10", 10002)]
    expected = sidecar_from_scratch([zone_2], egresses, dataplanes)
    for name in ("backend", "db"):
        assert cla_of(web.resources(types.ENDPOINT), name) == cla_of(expected[types.ENDPOINT], name)
    assert held_bodies(box) == egress_from_scratch(engine, EGRESS_1, [zone_2])

    # zone-2's ingress goes: the egress carries nothing (no listener), web only its locals.
    engine.apply_now(put(zone_2, operation=Operation.DELETE))
    assert box.resources(types.LISTENER) == {}
    assert groups(cla_of(web.resources(types.ENDPOINT), "backend")) == [
        ("zone-1", 0, [("10.0.0.3", 10000, 1), ("10.0.0.7", 10000, 1)]),
    ]


def test_without_zone_egress_routing_remote_endpoints_stay_the_ingresses() -> None:
    engine = Engine(handlers=default_handlers(zone="zone-1"))
    zone_2 = ingress("zi-2", "zone-2", {"backend": 3})
    engine.apply_now(put(routing_mesh(zone_egress=False), WEB, *LOCAL, zone_2, EGRESS_1))
    web, box = subscribed(engine, "default.web-1"), subscribed(engine, ".egress-1")
    assert groups(cla_of(web.resources(types.ENDPOINT), "backend"))[1] == (
        "zone-2",
        0,
        [("192.0.2.2", 10001, 3)],
    )
    assert box.resources(types.LISTENER) == {}
    # Turning routing on: web's remote endpoint becomes the egress, the egress carries backend.
    engine.apply_now(put(routing_mesh()))
    assert groups(cla_of(web.resources(types.ENDPOINT), "backend"))[1] == (
        "zone-2",
        0,
        [("10.0.0.9", 10002, 1)],
    )
    assert list(box.resources(types.CLUSTER)) == ["default:backend"]


def test_an_external_service_of_another_zone_is_passed_to_that_zones_ingress() -> None:
    """Kuma's golden 06 (facts): an ExternalService tagged ``kuma.io/zone: zone-2`` that
    zone-2's ingress lists is passed through to it; an untagged one is terminated here."""
    engine = Engine(handlers=default_handlers(zone="zone-1"))
    listed = zone_2_listing(
        "zi-2",
        {
            "tags": {SERVICE_TAG: "es-2", "kuma.io/protocol": "http", "kuma.io/zone": "zone-2"},
            "instances": 1,
            "mesh": "default",
            "externalService": True,
        },
    )
    engine.apply_now(
        put(
            routing_mesh(),
            external("es-1", "kuma.io:80"),
            external("es-2", "httpbin.io:80", zone="zone-2"),
            listed,
            EGRESS_1,
        )
    )
    box = subscribed(engine, ".egress-1")
    (body,) = box.resources(types.LISTENER).values()
    chains = Listener.FromString(body.body).filter_chains
    by_sni = {c.filter_chain_match.server_names[0]: c for c in chains}
    assert set(by_sni) == {"es-1{mesh=default}", "es-2{mesh=default}"}
    # es-2: passthrough (no TLS termination here) to zone-2's ingress.
    assert not by_sni["es-2{mesh=default}"].HasField("transport_socket")
    assert [f.name for f in by_sni["es-2{mesh=default}"].filters] == [
        "envoy.filters.network.tcp_proxy"
    ]
    assert groups(cla_of(box.resources(types.ENDPOINT), "default:es-2")) == [
        ("zone-2", 0, [("10.0.0.254", 10001, 1)])
    ]
    # es-1: terminated with the mesh's mTLS and sent to the outside.
    assert by_sni["es-1{mesh=default}"].HasField("transport_socket")
    es_1 = Cluster.FromString(box.resources(types.CLUSTER)["default:es-1"].body)
    assert es_1.type == Cluster.STRICT_DNS


def test_this_zones_ingress_hands_its_external_services_to_this_zones_egress() -> None:
    """The other end of the previous test, in zone-2 (Kuma's pkg/xds/ingress/outbound.go):
    zone-2's ingress lists ``es-2`` (tagged zone-2) and passes it by SNI to zone-2's egresses,
    which terminate it; an egress moving moves the ingress's endpoint."""
    engine = Engine(handlers=default_handlers(zone="zone-2"))
    own = from_document(
        {
            "type": "ZoneIngress",
            "name": "ingress-2",
            "networking": {"address": "10.0.0.30", "port": 10001},
            "availableServices": [
                {
                    "tags": {
                        SERVICE_TAG: "es-2",
                        "kuma.io/protocol": "http",
                        "kuma.io/zone": "zone-2",
                    },
                    "instances": 1,
                    "mesh": "default",
                    "externalService": True,
                }
            ],
        }
    )
    egress_2 = egress("egress-2", "10.0.0.20")
    es_2 = external("es-2", "httpbin.io:80", zone="zone-2")
    engine.apply_now(put(routing_mesh(), es_2, own, egress_2))
    ingress_held = subscribed(engine, ".ingress-2")
    (body,) = ingress_held.resources(types.LISTENER).values()
    chains = Listener.FromString(body.body).filter_chains
    assert [c.filter_chain_match.server_names[0] for c in chains] == ["es-2{mesh=default}"]
    assert [f.name for f in chains[0].filters] == ["envoy.filters.network.tcp_proxy"]
    assert groups(cla_of(ingress_held.resources(types.ENDPOINT), "default:es-2")) == [
        ("zone-2", 0, [("10.0.0.20", 10002, 1)])
    ]
    # zone-2's egress terminates es-2 (reachable from its own zone) towards the outside.
    egress_held = subscribed(engine, ".egress-2")
    (body,) = egress_held.resources(types.LISTENER).values()
    (chain,) = Listener.FromString(body.body).filter_chains
    assert chain.name == "es-2_default"
    assert chain.HasField("transport_socket")

    # The egress moves: the ingress's endpoint follows.
    engine.apply_now(put(egress("egress-2", "10.0.0.20", port=10003)))
    assert ingress_held.take_changes() == {types.ENDPOINT: {"default:es-2"}}
    assert groups(cla_of(ingress_held.resources(types.ENDPOINT), "default:es-2")) == [
        ("zone-2", 0, [("10.0.0.20", 10003, 1)])
    ]

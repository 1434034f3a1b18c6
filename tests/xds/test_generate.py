"""Golden and unit tests of kuma.xds.generate.

Goldens: ``generate_proxy`` output as YAML (resources sorted by type URL, then name; keys
sorted), in ``tests/xds/golden/<case>.yaml``. ``UPDATE_GOLDEN=1 pytest tests/xds`` rewrites
them; review the diff against Kuma's ``pkg/xds/generator/testdata`` goldens.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from google.protobuf import json_format  # type: ignore[import-untyped, unused-ignore]

from kuma.resources.model import Dataplane, Mesh
from kuma.xds.generate import (
    Destination,
    Endpoint,
    Resources,
    StaticMeshView,
    admin_resources,
    common_protocol,
    endpoints_of,
    generate_proxy,
    infer_protocol,
    load_assignment,
    names,
    outbound_listener,
    outbounds_of,
    parse_protocol,
    types,
)
from kuma.xds.generate._pb import KNOWN_INTERNAL_CIDRS

GOLDEN = Path(__file__).parent / "golden"
DEFAULT_ADMIN_PORT = 9901


def dataplane(text: str) -> Dataplane:
    doc = yaml.safe_load(text)
    doc.setdefault("type", "Dataplane")
    doc.setdefault("mesh", "default")
    return msgspec.convert(doc, Dataplane)


def to_plain(message: Any) -> Any:
    return json.loads(json_format.MessageToJson(message))


def to_yaml(resources: Resources) -> str:
    items = [
        {"type": type_url.rsplit(".", 1)[-1], "name": name, "resource": to_plain(message)}
        for type_url in sorted(resources)
        for name, message in sorted(resources[type_url].items())
    ]
    return yaml.safe_dump({"resources": items}, sort_keys=True, width=100)


# --- the mesh every golden case lives in ------------------------------------------------------

MESH = [
    dataplane(text)
    for text in (
        # tcp (untagged), with a non-service tag
        """
        name: db-01
        networking:
          address: 192.168.0.3
          inbound:
          - port: 5432
            tags: {kuma.io/service: db, role: master}
        """,
        # http, two instances, one of them advertised elsewhere, one unhealthy third
        """
        name: elastic-01
        networking:
          address: 192.168.0.4
          inbound:
          - port: 9200
            tags: {kuma.io/service: elastic, kuma.io/protocol: http, version: v1}
        """,
        """
        name: elastic-02
        networking:
          address: 10.1.0.5
          advertisedAddress: 192.168.0.5
          inbound:
          - port: 9200
            tags: {kuma.io/service: elastic, kuma.io/protocol: HTTP, version: v2}
        """,
        """
        name: elastic-03
        networking:
          address: 192.168.0.6
          inbound:
          - port: 9200
            tags: {kuma.io/service: elastic, kuma.io/protocol: tcp}
            health: {ready: false}
        """,
        # http2 and grpc
        """
        name: api-01
        networking:
          address: 192.168.0.7
          inbound:
          - port: 8443
            tags: {kuma.io/service: api, kuma.io/protocol: http2}
          - port: 9000
            address: 192.168.0.70
            servicePort: 9090
            tags: {kuma.io/service: rpc, kuma.io/protocol: grpc}
        """,
        # http + http2 endpoints: the common protocol is tcp
        """
        name: mixed-01
        networking:
          address: 192.168.0.8
          inbound:
          - port: 80
            tags: {kuma.io/service: mixed, kuma.io/protocol: http}
          - port: 81
            tags: {kuma.io/service: mixed, kuma.io/protocol: http2}
          - port: 82
            tags: {kuma.io/service: mixed, kuma.io/protocol: grpc}
            state: NotReady
        """,
        # kafka
        """
        name: kafka-01
        networking:
          address: 192.168.0.9
          inbound:
          - port: 9092
            tags: {kuma.io/service: kafka, kuma.io/protocol: kafka}
        """,
        # zones: two zones and an untagged instance
        """
        name: zonal-01
        networking:
          address: 10.0.1.1
          inbound:
          - port: 7000
            tags: {kuma.io/service: zonal, kuma.io/zone: zone-b}
        """,
        """
        name: zonal-02
        networking:
          address: 10.0.2.1
          inbound:
          - port: 7000
            tags: {kuma.io/service: zonal, kuma.io/zone: zone-a}
        """,
        """
        name: zonal-03
        networking:
          address: 10.0.0.1
          inbound:
          - port: 7000
            tags: {kuma.io/service: zonal}
        """,
        """
        name: pay-01
        networking:
          address: 192.168.4.1
          inbound:
          - port: 8000
            tags: {kuma.io/service: pay, kuma.io/protocol: http, version: v1, region: us}
        """,
        """
        name: pay-02
        networking:
          address: 192.168.4.2
          inbound:
          - port: 8000
            tags: {kuma.io/service: pay, kuma.io/protocol: http, version: v2, region: eu}
        """,
        """
        name: pay-03
        networking:
          address: 192.168.4.3
          inbound:
          - port: 8000
            tags: {kuma.io/service: pay, kuma.io/protocol: http, version: v1, region: eu}
        """,
        """
        name: zonal-04
        networking:
          address: 10.0.1.2
          inbound:
          - port: 7000
            tags: {kuma.io/service: zonal, kuma.io/zone: zone-b}
        """,
    )
]

VIPS = {
    "api": "240.0.0.1",
    "db": "240.0.0.2",
    "elastic": "240.0.0.3",
    "rpc": "240.0.0.4",
    "backend": "240.0.0.5",
    "kafka": "240.0.0.6",
}

CASES: dict[str, tuple[str, Mesh | None]] = {
    # Kuma's profile-source golden, without mTLS: 1 inbound + tcp and http outbounds.
    "profile-source": (
        """
        name: backend-01
        networking:
          address: 192.168.0.1
          inbound:
          - port: 80
            servicePort: 8080
            tags: {kuma.io/service: backend}
          outbound:
          - port: 54321
            tags: {kuma.io/service: db}
          - port: 59200
            tags: {kuma.io/service: elastic}
        """,
        None,
    ),
    # grpc and http inbounds on their own addresses, admin port from the resource, http2 and
    # grpc outbounds, an outbound to a service with mixed protocols, one with no endpoints.
    "grpc-http2": (
        """
        name: web-01
        networking:
          address: 192.168.1.1
          inbound:
          - port: 9000
            servicePort: 9001
            serviceAddress: 127.0.0.1
            tags: {kuma.io/service: web-grpc, kuma.io/protocol: grpc}
          - port: 8080
            address: 192.168.1.2
            tags: {kuma.io/service: web, kuma.io/protocol: http, version: v1}
          outbound:
          - port: 10001
            tags: {kuma.io/service: api}
          - port: 10002
            address: 127.0.0.2
            tags: {kuma.io/service: rpc}
          - port: 10003
            tags: {kuma.io/service: mixed}
          - port: 10004
            tags: {kuma.io/service: nowhere}
          admin: {port: 9902}
        """,
        None,
    ),
    # kafka in and out (tcp proxying), zone localities, unhealthy inbounds still listened on,
    # node address on loopback: no admin listener.
    "kafka-zones": (
        """
        name: worker-01
        networking:
          address: 127.0.0.1
          inbound:
          - port: 9093
            servicePort: 9092
            serviceAddress: 127.0.0.1
            tags: {kuma.io/service: worker, kuma.io/protocol: kafka}
          - port: 9094
            serviceAddress: 127.0.0.1
            servicePort: 9095
            tags: {kuma.io/service: worker-admin}
            health: {ready: false}
          outbound:
          - port: 19092
            tags: {kuma.io/service: kafka}
          - port: 17000
            tags: {kuma.io/service: zonal}
        """,
        None,
    ),
    # a delegated gateway: outbounds, admin, no inbounds.
    "gateway-delegated": (
        """
        name: edge-01
        networking:
          address: 192.168.2.1
          gateway: {type: DELEGATED, tags: {kuma.io/service: edge}}
          outbound:
          - port: 10001
            tags: {kuma.io/service: elastic}
          - port: 10002
            tags: {kuma.io/service: db}
        """,
        None,
    ),
    # transparent proxying with reachableServices (one without a VIP), and the default
    # passthrough; the admin port is the CP default.
    "transparent-reachable": (
        """
        name: tp-01
        networking:
          address: 192.168.3.1
          inbound:
          - port: 8080
            tags: {kuma.io/service: backend, kuma.io/protocol: http}
          transparentProxying:
            redirectPortInbound: 15006
            redirectPortOutbound: 15001
            reachableServices: [api, db, rpc, zonal]
        """,
        None,
    ),
    # transparent proxying to every service with a VIP (its own included), dual stack,
    # passthrough disabled in the Mesh, an explicit outbound kept, one on a VIP dropped.
    "transparent-all": (
        """
        name: tp-02
        networking:
          address: 192.168.3.2
          inbound:
          - port: 8080
            serviceAddress: 192.168.3.20
            tags: {kuma.io/service: backend, kuma.io/protocol: http}
          outbound:
          - port: 10001
            tags: {kuma.io/service: db}
          - port: 80
            address: 240.0.0.2
            tags: {kuma.io/service: db}
          transparentProxying:
            redirectPortInbound: 15006
            redirectPortOutbound: 15001
            ipFamilyMode: DualStack
        """,
        Mesh(name="default", networking={"outbound": {"passthrough": False}}),
    ),
    # mTLS STRICT (builtin CA): secured tcp and http inbounds with deny-all RBAC (no
    # permission), every outbound cluster originating mTLS.
    "mtls-strict": (
        """
        name: backend-01
        networking:
          address: 192.168.0.1
          inbound:
          - port: 80
            servicePort: 8080
            tags: {kuma.io/service: backend}
          - port: 81
            servicePort: 8081
            tags: {kuma.io/service: backend-api, kuma.io/protocol: http}
          outbound:
          - port: 54321
            tags: {kuma.io/service: db}
          - port: 59200
            tags: {kuma.io/service: elastic}
        """,
        Mesh(
            name="default",
            mtls={
                "enabledBackend": "ca-1",
                "backends": [{"name": "ca-1", "type": "builtin"}],
            },
        ),
    ),
    # mTLS PERMISSIVE: tls_inspector and three chains per inbound; only the TLS-ready service
    # (db, see _generate) gets an mTLS cluster.
    "mtls-permissive": (
        """
        name: backend-01
        networking:
          address: 192.168.0.1
          inbound:
          - port: 80
            servicePort: 8080
            tags: {kuma.io/service: backend, kuma.io/protocol: http}
          outbound:
          - port: 54321
            tags: {kuma.io/service: db}
          - port: 59200
            tags: {kuma.io/service: elastic}
        """,
        Mesh(
            name="default",
            mtls={
                "enabledBackend": "ca-1",
                "backends": [{"name": "ca-1", "type": "builtin", "mode": "PERMISSIVE"}],
            },
        ),
    ),
    # Virtual probes: to an inbound's application (path rewritten, query dropped, escapes
    # decoded), and a redirect where no inbound's application listens on the port.
    "probes": (
        """
        name: web-01
        networking:
          address: 192.168.6.1
          inbound:
          - port: 80
            servicePort: 8080
            tags: {kuma.io/service: web, kuma.io/protocol: http}
          - port: 81
            tags: {kuma.io/service: web-admin}
        probes:
          port: 9000
          endpoints:
          - {inboundPort: 8080, inboundPath: /healthz, path: /8080/healthz}
          - {inboundPort: 81, inboundPath: "/ready?full=1", path: "/81/ready?full=1"}
          - {inboundPort: 3001, inboundPath: /live%20check, path: /3001/live}
        """,
        None,
    ),
    # Outbounds with tags beyond kuma.io/service: each subset gets Kuma's hashed cluster with
    # only its endpoints; equal tag sets share a cluster; a subset nothing matches is empty.
    "tagged-outbounds": (
        """
        name: shop-01
        networking:
          address: 192.168.5.1
          inbound:
          - port: 8080
            tags: {kuma.io/service: shop}
          outbound:
          - port: 10001
            tags: {kuma.io/service: pay, version: v1}
          - port: 10002
            tags: {kuma.io/service: pay, version: v1, region: eu}
          - port: 10003
            tags: {kuma.io/service: pay}
          - port: 10004
            tags: {version: v1, kuma.io/service: pay}
          - port: 10005
            tags: {kuma.io/service: pay, version: v3}
          - port: 10006
            tags: {kuma.io/service: db, role: master}
        """,
        None,
    ),
    # IPv6 addresses: bracketed names, ::6 as the source towards the application.
    "ipv6": (
        """
        name: v6-01
        networking:
          address: fd00::1
          inbound:
          - port: 8080
            serviceAddress: fd00::2
            tags: {kuma.io/service: backend, kuma.io/protocol: http2}
          - port: 8081
            address: "::1"
            tags: {kuma.io/service: local}
          transparentProxying:
            redirectPortInbound: 15006
            redirectPortOutbound: 15001
            redirectPortInboundV6: 15010
            reachableServices: [db]
        """,
        None,
    ),
}


def _generate(case: str) -> Resources:
    text, mesh = CASES[case]
    proxy = dataplane(text)
    view = StaticMeshView([*MESH, proxy], mesh=mesh, vips=VIPS)
    return generate_proxy(proxy, view, DEFAULT_ADMIN_PORT, tls_ready=lambda s: s == "db")


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str) -> None:
    actual = to_yaml(_generate(case))
    path = GOLDEN / f"{case}.yaml"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(actual)
    assert path.exists(), f"missing golden {path}: run with UPDATE_GOLDEN=1"
    assert actual == path.read_text()


def test_generation_is_deterministic() -> None:
    for case in CASES:
        first, second = _generate(case), _generate(case)
        for type_url, by_name in first.items():
            assert list(by_name) == list(second[type_url])
            for name, message in by_name.items():
                assert message.SerializeToString(deterministic=True) == second[type_url][
                    name
                ].SerializeToString(deterministic=True)


def test_every_resource_is_named_by_its_key() -> None:
    for case in CASES:
        for type_url, by_name in _generate(case).items():
            for name, message in by_name.items():
                m: Any = message
                key = m.cluster_name if type_url == types.ENDPOINT else m.name
                assert key == name


def test_every_referenced_cluster_exists() -> None:
    for case in CASES:
        resources = _generate(case)
        clusters = set(resources[types.CLUSTER])
        assert set(resources[types.ENDPOINT]) <= clusters
        text = json.dumps([to_plain(m) for m in resources[types.LISTENER].values()])
        referenced = {
            value
            for key, value in _walk(json.loads(text))
            if key == "cluster" and isinstance(value, str)
        }
        missing = referenced - clusters
        if case == "transparent-all":  # passthrough disabled: the listener's target is absent
            assert missing == {names.OUTBOUND_PASSTHROUGH_IPV4, names.OUTBOUND_PASSTHROUGH_IPV6}
        else:
            assert not missing, case


def _walk(node: Any) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            found.append((key, value))
            found.extend(_walk(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_walk(item))
    return found


# --- protocols --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ([], "tcp"),
        ([None], "tcp"),
        ([""], "tcp"),
        (["http"], "http"),
        (["HTTP"], "http"),
        (["http", "http"], "http"),
        (["http", "http2"], "tcp"),  # Kuma: neither stack holds the other
        (["http2", "http"], "tcp"),
        (["http", "tcp"], "tcp"),
        (["http", None], "tcp"),  # untagged is unknown, which absorbs everything
        (["http", "bogus"], "tcp"),
        (["http2", "http2"], "http2"),
        (["grpc"], "grpc"),
        (["grpc", "grpc"], "grpc"),
        (["grpc", "http2"], "http2"),
        (["http2", "grpc"], "http2"),
        (["grpc", "http"], "tcp"),
        (["grpc", "http2", "grpc"], "http2"),
        (["grpc", "tcp"], "tcp"),
        (["kafka"], "kafka"),
        (["kafka", "kafka"], "kafka"),
        (["kafka", "tcp"], "tcp"),
        (["kafka", "http"], "tcp"),
        (["tcp", "tcp"], "tcp"),
    ],
)
def test_infer_protocol(tags: list[str | None], expected: str) -> None:
    assert infer_protocol(tags) == expected
    assert infer_protocol(reversed(tags)) == expected


def test_common_protocol_is_commutative_and_associative() -> None:
    values = ["", "tcp", "http", "http2", "grpc", "kafka"]
    for a in values:
        assert parse_protocol(a) == a
        for b in values:
            assert common_protocol(a, b) == common_protocol(b, a)
            for c in values:
                assert common_protocol(common_protocol(a, b), c) == common_protocol(
                    a, common_protocol(b, c)
                )


# --- endpoints --------------------------------------------------------------------------------


def test_endpoints_of_healthy_inbounds_with_advertised_address() -> None:
    dp = dataplane(
        """
        name: dp
        networking:
          address: 10.0.0.1
          advertisedAddress: 1.2.3.4
          inbound:
          - {port: 1001, tags: {kuma.io/service: a, kuma.io/zone: z}}
          - {port: 1002, address: 10.0.0.2, tags: {kuma.io/service: b}, state: NotReady}
          - {port: 1003, tags: {kuma.io/service: c}, health: {ready: false}}
          - {port: 1004, tags: {kuma.io/service: d}, state: Ignored}
          - {port: 1005, tags: {kuma.io/service: e}, health: {ready: true}, state: Ready}
          - {port: 49151, tags: {kuma.io/service: serviceless}}
        """
    )
    assert endpoints_of(dp) == [
        ("a", Endpoint("1.2.3.4", 1001, (("kuma.io/service", "a"), ("kuma.io/zone", "z")), "z")),
        ("e", Endpoint("1.2.3.4", 1005, (("kuma.io/service", "e"),))),
    ]


def test_endpoint_address_falls_back_to_inbound_then_node_address() -> None:
    dp = dataplane(
        """
        name: dp
        networking:
          address: 10.0.0.1
          inbound:
          - {port: 1, address: 10.0.0.2, servicePort: 2, tags: {kuma.io/service: a}}
          - {port: 3, tags: {kuma.io/service: a}}
        """
    )
    assert [(s, e.address, e.port) for s, e in endpoints_of(dp)] == [
        ("a", "10.0.0.2", 1),
        ("a", "10.0.0.1", 3),
    ]


def test_gateways_are_endpoints_of_nothing() -> None:
    gateway = dataplane(
        """
        name: gw
        networking:
          address: 10.0.0.1
          gateway: {tags: {kuma.io/service: edge}}
        """
    )
    assert endpoints_of(gateway) == []
    view = StaticMeshView([gateway])
    assert list(view.services()) == []
    assert view.endpoints("edge") == ()
    assert view.protocol("edge") == "tcp"


def test_static_view_keeps_only_its_mesh_and_orders_endpoints() -> None:
    doc = "{name: %s, networking: {address: %s, inbound: [{port: %d, tags: {kuma.io/service: s}}]}}"
    a = dataplane(doc % ("a", "10.0.0.9", 1))
    b = dataplane(doc % ("b", "10.0.0.1", 2))
    other = msgspec.structs.replace(a, mesh="other")
    view = StaticMeshView([a, b, other], mesh=Mesh(name="default"))
    assert [(e.address, e.port) for e in view.endpoints("s")] == [("10.0.0.1", 2), ("10.0.0.9", 1)]
    assert list(view.services()) == ["s"]


def test_load_assignment_is_independent_of_input_order() -> None:
    endpoints = [e for s, e in (x for dp in MESH for x in endpoints_of(dp)) if s == "zonal"]
    forward = load_assignment("zonal", endpoints).SerializeToString(deterministic=True)
    backward = load_assignment("zonal", endpoints[::-1]).SerializeToString(deterministic=True)
    assert forward == backward
    cla = to_plain(load_assignment("zonal", endpoints))
    assert [g.get("locality", {}).get("zone") for g in cla["endpoints"]] == [
        None,
        "zone-a",
        "zone-b",
    ]


def test_empty_load_assignment() -> None:
    assert to_plain(load_assignment("s", [])) == {"clusterName": "s"}


# --- names, admin, sharing ----------------------------------------------------------------------


def test_names() -> None:
    assert names.inbound_listener_name("10.0.0.1", 80) == "inbound:10.0.0.1:80"
    assert names.inbound_listener_name("fd00::1", 80) == "inbound:[fd00::1]:80"
    assert names.outbound_listener_name("127.0.0.1", 10001) == "outbound:127.0.0.1:10001"
    assert names.local_cluster_name(8080) == "localhost:8080"
    assert names.inbound_route_name("web") == "inbound:web"
    assert names.outbound_route_name("web") == "outbound:web"
    assert names.sanitize_metric("a.b:c/d-e_f") == "a_b_c_d-e_f"


@pytest.mark.parametrize(
    ("address", "admin", "default", "expected"),
    [
        ("192.168.0.1", None, 9901, ["Cluster:kuma:envoy:admin", "Listener:kuma:envoy:admin"]),
        ("192.168.0.1", 9902, 9901, ["Cluster:kuma:envoy:admin", "Listener:kuma:envoy:admin"]),
        ("127.0.0.1", None, 9901, ["Cluster:kuma:envoy:admin"]),  # would collide with Envoy's
        ("fd00::1", None, 9901, ["Cluster:kuma:envoy:admin", "Listener:kuma:envoy:admin"]),
        ("dp.example.com", None, 9901, ["Cluster:kuma:envoy:admin"]),  # not bindable
        ("192.168.0.1", None, 0, []),  # no admin API: nothing to expose
    ],
)
def test_admin_resources(
    address: str, admin: int | None, default: int, expected: list[str]
) -> None:
    admin_doc = f"admin: {{port: {admin}}}" if admin else ""
    dp = dataplane(
        f"""
        name: dp
        networking:
          address: {address}
          inbound: [{{port: 80, tags: {{kuma.io/service: s}}}}]
          {admin_doc}
        """
    )
    resources: list[Any] = admin_resources(dp, default)
    assert [f"{m.DESCRIPTOR.name}:{m.name}" for m in resources] == expected
    port = admin or default
    for message in resources:
        plain = to_plain(message)
        if message.DESCRIPTOR.name == "Cluster":
            endpoint = plain["loadAssignment"]["endpoints"][0]["lbEndpoints"][0]["endpoint"]
            expected_address = {"address": "127.0.0.1", "portValue": port}
            assert endpoint["address"]["socketAddress"] == expected_address
        else:
            assert plain["address"]["socketAddress"] == {"address": address, "portValue": port}
            routes = _walk(plain)
            assert [v for k, v in routes if k == "prefix"] == ["/ready"]


def test_readiness_goes_to_kuma_dp_when_it_reports_it() -> None:
    """Kuma's admin golden 06: a ``kuma:readiness`` STATIC cluster to kuma-dp's reporter on
    loopback (connect 5s, altStatName), and the admin listener's /ready routed to it."""
    dp = dataplane(
        """
        name: dp
        networking:
          address: 192.168.0.1
          inbound: [{port: 80, tags: {kuma.io/service: s}}]
        """
    )
    resources: list[Any] = admin_resources(dp, 9901, readiness_port=9902)
    by_name = {f"{m.DESCRIPTOR.name}:{m.name}": to_plain(m) for m in resources}
    assert sorted(by_name) == [
        "Cluster:kuma:envoy:admin",
        "Cluster:kuma:readiness",
        "Listener:kuma:envoy:admin",
    ]
    assert by_name["Cluster:kuma:readiness"] == {
        "name": "kuma:readiness",
        "altStatName": "kuma_readiness",
        "type": "STATIC",
        "connectTimeout": "5s",
        "loadAssignment": {
            "clusterName": "kuma:readiness",
            "endpoints": [
                {
                    "lbEndpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socketAddress": {"address": "127.0.0.1", "portValue": 9902}
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }
    routes = [v for k, v in _walk(by_name["Listener:kuma:envoy:admin"]) if k == "route"]
    assert routes == [{"cluster": "kuma:readiness", "prefixRewrite": "/ready"}]


def test_transparent_outbounds_are_shared_across_proxies() -> None:
    resources = _generate("transparent-all")
    listener = resources[types.LISTENER]["outbound:240.0.0.1:80"]
    # Built from (vip, port, service, protocol) only: every transparent proxy can share it.
    shared = outbound_listener("240.0.0.1", 80, "api", "http2", bind_to_port=False)
    assert listener.SerializeToString(deterministic=True) == shared.SerializeToString(
        deterministic=True
    )


def test_outbounds_of_transparent_proxy() -> None:
    proxy = dataplane(CASES["transparent-reachable"][0])
    view = StaticMeshView([*MESH, proxy], vips={**VIPS, "backend": "192.168.3.1"})
    # reachableServices keeps api, db, rpc and zonal; zonal has no VIP.
    assert outbounds_of(proxy, view) == [
        ("240.0.0.1", 80, Destination("api")),
        ("240.0.0.2", 80, Destination("db")),
        ("240.0.0.4", 80, Destination("rpc")),
    ]
    overlapping = dataplane(
        """
        name: tp
        networking:
          address: 192.168.3.1
          inbound: [{port: 80, tags: {kuma.io/service: backend}}]
          transparentProxying: {redirectPortInbound: 15006, redirectPortOutbound: 15001}
        """
    )
    assert ("192.168.3.1", 80, Destination("backend")) not in outbounds_of(overlapping, view)
    assert ("240.0.0.2", 80, Destination("db")) in outbounds_of(overlapping, view)


def test_not_transparent_without_both_redirect_ports() -> None:
    proxy = dataplane(
        """
        name: half
        networking:
          address: 10.0.0.1
          inbound: [{port: 80, tags: {kuma.io/service: s}}]
          transparentProxying: {redirectPortOutbound: 15001}
        """
    )
    resources = generate_proxy(proxy, StaticMeshView([proxy], vips={"s": "240.0.0.9"}), 0)
    assert sorted(resources[types.LISTENER]) == ["inbound:10.0.0.1:80"]
    assert sorted(resources[types.CLUSTER]) == ["localhost:80"]


# Kuma v2.7.29's probe goldens (pkg/xds/generator/testdata/probe/01 and 03): a Dataplane
# without an address, one inbound, one probe endpoint; routed to the application when an
# inbound's application listens on the probe's port, redirected otherwise.
_KUMA_PROBE_ROUTE = {
    "match": {
        "headers": [{"name": ":method", "stringMatch": {"exact": "GET"}}],
        "path": "/8080/healthz/probe",
    },
    "route": {
        "cluster": "localhost:8080",
        "regexRewrite": {"pattern": {"regex": ".*"}, "substitution": "/healthz/probe"},
    },
}
_KUMA_PROBE_REDIRECT = {
    "match": _KUMA_PROBE_ROUTE["match"],
    "redirect": {"pathRedirect": "/healthz/probe", "portRedirect": 8080},
}


@pytest.mark.parametrize(
    ("inbound_port", "route"), [(8080, _KUMA_PROBE_ROUTE), (1010, _KUMA_PROBE_REDIRECT)]
)
def test_probe_listener_is_kumas(inbound_port: int, route: dict[str, Any]) -> None:
    proxy = dataplane(
        f"""
        name: probed
        networking:
          inbound: [{{port: {inbound_port}, tags: {{kuma.io/service: web}}}}]
        probes:
          port: 9000
          endpoints:
          - {{inboundPort: 8080, inboundPath: /healthz/probe, path: /8080/healthz/probe}}
        """
    )
    listener = generate_proxy(proxy, StaticMeshView([proxy]), 0)[types.LISTENER]["probe:listener"]
    hcm_type = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
    assert to_plain(listener) == {
        "name": "probe:listener",
        "address": {"socketAddress": {"portValue": 9000}},
        "enableReusePort": False,
        "trafficDirection": "INBOUND",
        "filterChains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typedConfig": {
                            "@type": hcm_type + ".HttpConnectionManager",
                            "httpFilters": [
                                {
                                    "name": "envoy.filters.http.router",
                                    "typedConfig": {
                                        "@type": "type.googleapis.com/"
                                        "envoy.extensions.filters.http.router.v3.Router"
                                    },
                                }
                            ],
                            # Kuma's default ipam.knownInternalCIDRs (its probe
                            # golden uses test addresses instead).
                            "internalAddressConfig": {
                                "cidrRanges": [
                                    {"addressPrefix": prefix, "prefixLen": length}
                                    for prefix, length in KNOWN_INTERNAL_CIDRS
                                ]
                            },
                            "routeConfig": {
                                "name": "probe:route_configuration",
                                "virtualHosts": [
                                    {"domains": ["*"], "name": "probe", "routes": [route]}
                                ],
                            },
                            "statPrefix": "probe_listener",
                        },
                    }
                ]
            }
        ],
    }

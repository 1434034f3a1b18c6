"""The ZoneIngress proxy in the engine: Kuma's shapes (goldens
pkg/xds/generator/testdata/ingress/01 and with-meshhttproute-subset, v2.7.29), what it
carries, and incremental updates (an endpoint change sends one ClusterLoadAssignment)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from google.protobuf import json_format

from kuma.resources import Dataplane, Mesh, ResourceMeta, ZoneIngress, from_document
from kuma.resources.model import Policy, Resource
from kuma.store import Operation, ResourceEvent
from kuma.xds import types
from kuma.xds.engine import Engine
from kuma.xds.engine.assemble import _resource_name
from kuma.xds.engine.watches import Subscription
from kuma.xds.engine.zone_ingress import from_scratch
from kuma.xds.generate.proxy import type_url_of
from kuma.xds.snapshot import VersionedResource, versioned

_META = ResourceMeta("1", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
NODE = ".ingress"
TLS_INSPECTOR = {
    "name": "envoy.filters.listener.tls_inspector",
    "typedConfig": {
        "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3."
        "TlsInspector"
    },
}


def put(resource: Resource) -> ResourceEvent:
    return ResourceEvent(Operation.CREATE, resource, _META, 1)


def mesh(mtls: bool = True) -> Mesh:
    backend = {"enabledBackend": "ca", "backends": [{"name": "ca", "type": "builtin"}]}
    return Mesh(name="mesh1", mtls=backend if mtls else None)


def backend(name: str, address: str, **tags: str) -> Dataplane:
    resource = from_document(
        {
            "type": "Dataplane",
            "mesh": "mesh1",
            "name": name,
            "networking": {
                "address": address,
                "inbound": [
                    {
                        "port": 2521,
                        "servicePort": 80,
                        "tags": {"kuma.io/service": "backend", **tags},
                    }
                ],
            },
        }
    )
    assert isinstance(resource, Dataplane)
    return resource


def ingress(*services: dict[str, str]) -> ZoneIngress:
    resource = from_document(
        {
            "type": "ZoneIngress",
            "name": "ingress",
            "networking": {"address": "10.0.0.1", "port": 10001},
            "availableServices": [{"mesh": "mesh1", "tags": t, "instances": 1} for t in services],
        }
    )
    assert isinstance(resource, ZoneIngress)
    return resource


def subset_route() -> Policy:
    resource = from_document(
        {
            "type": "MeshHTTPRoute",
            "mesh": "mesh1",
            "name": "to-v1",
            "spec": {
                "targetRef": {"kind": "Mesh"},
                "to": [
                    {
                        "targetRef": {"kind": "MeshService", "name": "backend"},
                        "rules": [
                            {
                                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                                "default": {
                                    "backendRefs": [
                                        {
                                            "kind": "MeshServiceSubset",
                                            "name": "backend",
                                            "tags": {"version": "v1", "region": "eu"},
                                        }
                                    ]
                                },
                            }
                        ],
                    }
                ],
            },
        }
    )
    assert isinstance(resource, Policy)
    return resource


V1 = {"kuma.io/service": "backend", "version": "v1", "region": "eu"}
V2 = {"kuma.io/service": "backend", "version": "v2", "region": "us"}


_MESSAGES = {
    types.CLUSTER: cluster_pb2.Cluster,
    types.ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
    types.LISTENER: listener_pb2.Listener,
}


def as_json(resource: VersionedResource) -> Any:
    message = _MESSAGES[resource.type_url].FromString(resource.body)
    return json.loads(json_format.MessageToJson(message))


def held(subscription: Subscription) -> dict[str, dict[str, Any]]:
    return {
        type_url: {name: as_json(r) for name, r in subscription.resources(type_url).items()}
        for type_url in _MESSAGES
    }


def scratch(engine: Engine, resource: ZoneIngress) -> dict[str, dict[str, Any]]:
    built: dict[str, dict[str, Any]] = {type_url: {} for type_url in _MESSAGES}
    for message in from_scratch(resource, NODE, engine.inputs.meshes):
        type_url = type_url_of(message)
        name = _resource_name(message)
        built[type_url][name] = as_json(versioned(type_url, name, message))
    return built


def connected(*events: ResourceEvent) -> tuple[Engine, Subscription]:
    engine = Engine()
    engine.apply_now(list(events))
    subscription = engine.subscribe(NODE)
    subscription.take_changes()
    return engine, subscription


def goldens_input(zi: ZoneIngress) -> tuple[Engine, Subscription]:
    """Kuma's golden inputs: backend v1 (eu) and v2 (us) of mesh1 on port 2521."""
    return connected(
        put(mesh()),
        put(backend("b1", "192.168.0.1", version="v1", region="eu")),
        put(backend("b2", "192.168.0.2", version="v2", region="us")),
        put(zi),
    )


def endpoint(address: str, **tags: str) -> dict[str, Any]:
    metadata = {**tags, "mesh": "mesh1"}
    return {
        "endpoint": {"address": {"socketAddress": {"address": address, "portValue": 2521}}},
        "loadBalancingWeight": 1,
        "metadata": {
            "filterMetadata": {"envoy.lb": metadata, "envoy.transport_socket_match": metadata}
        },
    }


def test_kumas_golden_01_default_route_single_mesh() -> None:
    zi = ingress(V1, V2)
    engine, subscription = goldens_input(zi)
    assert subscription.known
    assert held(subscription) == {
        types.CLUSTER: {
            "mesh1:backend": {
                "name": "mesh1:backend",
                "altStatName": "mesh1_backend",
                "type": "EDS",
                "connectTimeout": "5s",
                "edsClusterConfig": {"edsConfig": {"ads": {}, "resourceApiVersion": "V3"}},
            }
        },
        types.ENDPOINT: {
            "mesh1:backend": {
                "clusterName": "mesh1:backend",
                "endpoints": [
                    {
                        "lbEndpoints": [
                            endpoint("192.168.0.1", region="eu", version="v1"),
                            endpoint("192.168.0.2", region="us", version="v2"),
                        ]
                    }
                ],
            }
        },
        types.LISTENER: {
            "inbound:10.0.0.1:10001": {
                "name": "inbound:10.0.0.1:10001",
                "address": {"socketAddress": {"address": "10.0.0.1", "portValue": 10001}},
                "enableReusePort": False,
                "trafficDirection": "INBOUND",
                "listenerFilters": [TLS_INSPECTOR],
                "filterChains": [
                    {
                        "filterChainMatch": {
                            "serverNames": ["backend{mesh=mesh1}"],
                            "transportProtocol": "tls",
                        },
                        "filters": [
                            {
                                "name": "envoy.filters.network.tcp_proxy",
                                "typedConfig": {
                                    "@type": "type.googleapis.com/envoy.extensions.filters."
                                    "network.tcp_proxy.v3.TcpProxy",
                                    "cluster": "mesh1:backend",
                                    "statPrefix": "mesh1_backend",
                                },
                            }
                        ],
                    }
                ],
            }
        },
    }
    assert held(subscription) == scratch(engine, zi)


def test_kumas_golden_subset_route_and_routes_reach_a_connected_ingress() -> None:
    zi = ingress(V1, V2)
    engine, subscription = goldens_input(zi)
    # A route created after the ingress connected (its kind's selection key brings it).
    engine.apply_now([put(subset_route())])
    assert set(subscription.take_changes()) == {types.CLUSTER, types.LISTENER}
    config = held(subscription)
    assert config[types.CLUSTER]["mesh1:backend"]["lbSubsetConfig"] == {
        "fallbackPolicy": "ANY_ENDPOINT",
        "subsetSelectors": [{"fallbackPolicy": "NO_FALLBACK", "keys": ["region", "version"]}],
    }
    chains = config[types.LISTENER]["inbound:10.0.0.1:10001"]["filterChains"]
    assert [c["filterChainMatch"]["serverNames"] for c in chains] == [
        ["backend{mesh=mesh1,region=eu,version=v1}"],
        ["backend{mesh=mesh1}"],
    ]
    subset_proxy = chains[0]["filters"][0]["typedConfig"]
    assert subset_proxy["metadataMatch"] == {
        "filterMetadata": {"envoy.lb": {"region": "eu", "version": "v1"}}
    }
    assert "metadataMatch" not in chains[1]["filters"][0]["typedConfig"]
    assert config == scratch(engine, zi)


def test_an_endpoint_change_sends_that_services_cla_only() -> None:
    other = {"kuma.io/service": "other"}
    zi = ingress(V1, other)
    engine, subscription = connected(
        put(mesh()),
        put(backend("b1", "192.168.0.1", version="v1", region="eu")),
        put(zi),
    )
    assert set(subscription.resources(types.ENDPOINT)) == {"mesh1:backend"}  # other: no endpoint
    engine.apply_now([put(backend("b3", "192.168.0.3", version="v1", region="eu"))])
    changes = subscription.take_changes()
    assert dict(changes) == {types.ENDPOINT: {"mesh1:backend"}}
    assert held(subscription) == scratch(engine, zi)


def test_only_meshes_with_mtls_and_the_listed_services_are_served() -> None:
    zi = ingress(V1)
    engine, subscription = connected(
        put(mesh(mtls=False)), put(backend("b1", "192.168.0.1", version="v1")), put(zi)
    )
    # Nothing to pass through: Kuma's direct response names the proxy.
    listener = held(subscription)[types.LISTENER]["inbound:10.0.0.1:10001"]
    (chain,) = listener["filterChains"]
    assert chain["filters"][0]["typedConfig"]["response"] == {
        "inlineString": '{"proxy":".ingress","zone":""}'
    }
    assert not subscription.resources(types.CLUSTER)
    engine.apply_now([put(mesh(mtls=True))])  # mTLS on: the mesh's services appear
    assert set(subscription.resources(types.CLUSTER)) == {"mesh1:backend"}
    engine.apply_now([put(ingress({"kuma.io/service": "gone"}))])  # the list moves on
    assert not subscription.resources(types.CLUSTER)
    assert held(subscription) == scratch(engine, ingress({"kuma.io/service": "gone"}))
    engine.apply_now([ResourceEvent(Operation.DELETE, zi, _META, 1)])
    assert not subscription.known


def test_an_endpoint_change_that_splits_a_subset_re_assembles_the_chains() -> None:
    """With only v1 endpoints the route's subset selects them all (no metadata_match); a v2
    endpoint makes ``version`` relevant: cluster and listener change, not just the CLA."""
    zi = ingress(V1, V2)
    engine, subscription = connected(
        put(mesh()),
        put(subset_route()),
        put(backend("b1", "192.168.0.1", version="v1", region="eu")),
        put(zi),
    )
    chains = held(subscription)[types.LISTENER]["inbound:10.0.0.1:10001"]["filterChains"]
    assert "metadataMatch" not in chains[0]["filters"][0]["typedConfig"]
    engine.apply_now([put(backend("b2", "192.168.0.2", version="v2", region="us"))])
    assert set(subscription.take_changes()) == {types.CLUSTER, types.ENDPOINT, types.LISTENER}
    assert held(subscription) == scratch(engine, zi)
    engine.apply_now([put(backend("b3", "192.168.0.3", version="v2", region="us"))])
    assert dict(subscription.take_changes()) == {types.ENDPOINT: {"mesh1:backend"}}
    assert held(subscription) == scratch(engine, zi)

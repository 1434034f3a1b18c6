"""Outbounds with tags beyond ``kuma.io/service``: Kuma's subset clusters and their endpoints."""

from __future__ import annotations

from typing import Any

import pytest

from kuma.xds.generate import (
    Destination,
    Endpoint,
    StaticMeshView,
    destination_cluster_name,
    destination_load_assignment,
    generate_proxy,
    types,
)

from .test_generate import dataplane, to_plain


@pytest.mark.parametrize(
    ("service", "subset", "expected"),
    [
        # Names from Kuma v2.7.29's own goldens
        # (pkg/plugins/policies/meshtcproute/plugin/v1alpha1/testdata/kafka.*.golden.yaml).
        ("backend", [("region", "eu")], "backend-bb38a94289f18fb9"),
        ("backend", [("region", "us")], "backend-c72efb5be46fae6b"),
        # No tags besides the service: the service's own cluster.
        ("backend", [], "backend"),
    ],
)
def test_cluster_names_are_kumas(
    service: str, subset: list[tuple[str, str]], expected: str
) -> None:
    assert destination_cluster_name(service, subset) == expected
    assert Destination.of({"kuma.io/service": service, **dict(subset)}).cluster_name == expected


def test_destination_ignores_tag_order_and_the_mesh_tag() -> None:
    a = Destination.of({"kuma.io/service": "pay", "version": "v1", "region": "eu"})
    b = Destination.of(
        {"region": "eu", "kuma.io/mesh": "other", "version": "v1", "kuma.io/service": "pay"}
    )
    assert a == b
    assert hash(a) == hash(b)
    assert a.cluster_name == b.cluster_name
    assert a.tags == {"kuma.io/service": "pay", "region": "eu", "version": "v1"}


def test_subset_selects_endpoints_carrying_every_tag() -> None:
    v1_us = Endpoint.of("10.0.0.1", 80, {"kuma.io/service": "pay", "version": "v1", "region": "us"})
    v1_eu = Endpoint.of("10.0.0.2", 80, {"kuma.io/service": "pay", "version": "v1", "region": "eu"})
    v2 = Endpoint.of("10.0.0.3", 80, {"kuma.io/service": "pay", "version": "v2"})
    untagged = Endpoint.of("10.0.0.4", 80, {"kuma.io/service": "pay"})
    endpoints = [v1_us, v1_eu, v2, untagged]
    assert Destination("pay").select(endpoints) == endpoints
    assert Destination("pay", (("version", "v1"),)).select(endpoints) == [v1_us, v1_eu]
    eu_v1 = Destination("pay", (("region", "eu"), ("version", "v1")))
    assert eu_v1.select(endpoints) == [v1_eu]
    assert Destination("pay", (("version", "v3"),)).select(endpoints) == []
    cla = destination_load_assignment(eu_v1, endpoints)
    assert cla.cluster_name == eu_v1.cluster_name
    assert [
        e.endpoint.address.socket_address.address for g in cla.endpoints for e in g.lb_endpoints
    ] == ["10.0.0.2"]


def test_tagged_outbound_uses_its_subset_cluster_end_to_end() -> None:
    """Listener → cluster → endpoints: the v1 outbound reaches only v1, the plain one all."""
    backends = [
        dataplane(
            f"""
            name: pay-{version}
            networking:
              address: {address}
              inbound: [{{port: 8000, tags: {{kuma.io/service: pay, version: {version}}}}}]
            """
        )
        for version, address in (("v1", "10.1.0.1"), ("v2", "10.1.0.2"))
    ]
    client = dataplane(
        """
        name: client
        networking:
          address: 10.1.0.9
          outbound:
          - {port: 10001, tags: {kuma.io/service: pay, version: v1}}
          - {port: 10002, tags: {kuma.io/service: pay}}
        """
    )
    resources = generate_proxy(client, StaticMeshView([*backends, client]), 0)

    def addresses_behind(listener_name: str) -> list[str]:
        listener = to_plain(resources[types.LISTENER][listener_name])
        cluster = listener["filterChains"][0]["filters"][0]["typedConfig"]["cluster"]
        assert cluster in resources[types.CLUSTER]
        cla: Any = resources[types.ENDPOINT][cluster]
        return [
            e.endpoint.address.socket_address.address for g in cla.endpoints for e in g.lb_endpoints
        ]

    assert addresses_behind("outbound:127.0.0.1:10001") == ["10.1.0.1"]
    assert addresses_behind("outbound:127.0.0.1:10002") == ["10.1.0.1", "10.1.0.2"]
    metadata = to_plain(resources[types.LISTENER]["outbound:127.0.0.1:10001"])["metadata"]
    assert metadata["filterMetadata"]["io.kuma.tags"] == {"kuma.io/service": "pay", "version": "v1"}

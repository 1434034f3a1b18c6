"""What a policy change's selected proxies share instead of computing each: a service's
policy fingerprint is made of each kind's rule serialized once per rule (not per proxy and
service) unless a kind's input reads the proxy itself (MeshAccessLog), and a service
cluster's policy-shaped body is built once per (protocol, fingerprint) and copied into each
destination's cluster (kuma/policies/plugin.py, kuma/xds/generate/outbounds.py). Either must
give exactly what computing it per proxy and per destination gives."""

from __future__ import annotations

from typing import Any

import pytest

from kuma.policies import default_policies, outbound_fingerprint, resolve
from kuma.policies.meshaccesslog import MeshAccessLogPlugin
from kuma.policies.meshtimeout import MeshTimeoutPlugin
from kuma.resources import Mesh, from_document
from kuma.xds.generate import clusters, outbounds
from kuma.xds.generate.destination import Destination
from kuma.xds.generate.outbounds import policy_service_cluster

from .test_engine import dataplane


def policy(kind: str, to: dict[str, Any], name: str = "p") -> Any:
    return from_document(
        {
            "type": kind,
            "mesh": "default",
            "name": name,
            "spec": {"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "Mesh"}, **to}]},
        }
    )


def every_cluster_kind() -> dict[str, list[Any]]:
    """Kuma's default policies and one of each kind that edits outbound clusters."""
    by_kind: dict[str, list[Any]] = {}
    for found in default_policies(Mesh(name="default")):
        by_kind.setdefault(found.TYPE, []).append(found)
    extra = [
        policy("MeshTimeout", {"default": {"connectionTimeout": "7s", "idleTimeout": "9s"}}, "a"),
        policy(
            "MeshHealthCheck",
            {"default": {"interval": "2s", "http": {"path": "/health", "expectedStatuses": [200]}}},
        ),
        policy("MeshLoadBalancingStrategy", {"default": {"loadBalancer": {"type": "Random"}}}),
    ]
    for found in extra:
        by_kind.setdefault(found.TYPE, []).append(found)
    return by_kind


@pytest.mark.parametrize("protocol", ["http", "grpc", "tcp"])
def test_a_cluster_from_the_shared_body_equals_one_built_for_its_destination(
    monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    web = dataplane("web-1", "web", outbounds=("backend",))
    policies = resolve(web, every_cluster_kind())
    destinations = [
        Destination("backend"),
        Destination("billing_v2.ns.svc:80"),  # a name stats dislike: an alt_stat_name
        Destination("backend", (("version", "v2"),)),  # a subset: its own name and SNI
    ]
    monkeypatch.setattr(outbounds, "_CLUSTER_BODIES", {})
    bodies = 0
    build = clusters.service_cluster_body

    def counted(protocol: str) -> Any:
        nonlocal bodies
        bodies += 1
        return build(protocol)

    monkeypatch.setattr(outbounds, "service_cluster_body", counted)
    for tls_mesh in (None, "default"):
        for destination in destinations:
            fingerprint = outbound_fingerprint(policies, destination.service).cluster
            assert fingerprint  # the policies shape clusters: the shared body is used
            shared = policy_service_cluster(destination, protocol, policies, tls_mesh, fingerprint)
            own = policy_service_cluster(destination, protocol, policies, tls_mesh)
            assert shared.SerializeToString(deterministic=True) == own.SerializeToString(
                deterministic=True
            )
            assert shared.connect_timeout.seconds == 7
    assert bodies == 1  # one protocol, one fingerprint: the plugins ran once


def test_a_rule_is_serialized_once_for_every_proxy_and_service_it_covers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    by_kind = every_cluster_kind()
    proxies = [dataplane(f"web-{i}", "web", address=f"10.0.0.{i}") for i in (1, 2, 3)]
    services = ("backend", "billing", "shop")
    # The same confs in other policy objects (other rules): read before counting starts.
    other = every_cluster_kind()
    expected = {s: outbound_fingerprint(resolve(proxies[0], other), s) for s in services}
    read: list[object] = []
    full = MeshTimeoutPlugin.outbound_cluster_input

    def counted(self: Any, policies: Any, rule: Any) -> Any:
        read.append(rule)
        return full(self, policies, rule)

    monkeypatch.setattr(MeshTimeoutPlugin, "outbound_cluster_input", counted)
    for proxy in proxies:
        policies = resolve(proxy, by_kind)
        assert {s: outbound_fingerprint(policies, s) for s in services} == expected
    assert len(read) == 1  # one Mesh-wide rule: read once for 3 proxies x 3 services
    # A new version of a policy is a new rule: read again, and its fingerprint differs.
    newer = {"connectionTimeout": "8s", "idleTimeout": "9s"}
    by_kind["MeshTimeout"] = [
        *(p for p in by_kind["MeshTimeout"] if p.name != "a"),
        policy("MeshTimeout", {"default": newer}, "a"),
    ]
    again = outbound_fingerprint(resolve(proxies[0], by_kind), "backend")
    assert len(read) == 2
    assert again.cluster != expected["backend"].cluster
    assert again.listener == expected["backend"].listener  # what listeners read is as it was


def access_log_prints() -> set[bytes]:
    backend = {"type": "File", "file": {"path": "/tmp/log"}}
    log = policy("MeshAccessLog", {"default": {"backends": [backend]}})
    proxies = [dataplane(f"web-{i}", "web", address=f"10.0.0.{i}") for i in (1, 2)]
    return {
        outbound_fingerprint(resolve(p, {"MeshAccessLog": [log]}), "backend").listener
        for p in proxies
    }


def test_a_kind_reading_the_proxy_is_fingerprinted_per_proxy() -> None:
    # The access log names each proxy's address: two proxies, two listeners.
    assert len(access_log_prints()) == 2


def test_memoizing_a_kind_that_reads_the_proxy_would_share_its_listener(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check of the check: without MeshAccessLog's flag the second proxy would get the
    first one's fingerprint (and so its listener, logging the wrong address)."""
    monkeypatch.setattr(MeshAccessLogPlugin, "outbound_input_reads_proxy", False)
    assert len(access_log_prints()) == 1

"""A policy change rebuilds only the shared resources it shapes: the outbound listener and
cluster keys hold separate parts of the policies' fingerprint (kuma/policies/plugin.py), so a
MeshTimeout ``connectionTimeout`` change rebuilds clusters and re-uses every listener; a
proxy's inbound listener and cluster are rebuilt only when their inputs change
(kuma/xds/engine/proxy_memo.py: a ``to`` change keeps them, a ``from`` change does not)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from kuma.policies import outbound_fingerprint, resolve
from kuma.policies.meshtimeout import MeshTimeoutPlugin
from kuma.resources import ResourceMeta, from_document
from kuma.store import Operation, ResourceEvent
from kuma.xds import types
from kuma.xds.engine import Engine, proxy_memo
from kuma.xds.engine.watches import Subscription
from kuma.xds.generate.inbounds import inbound_resources

from .test_engine import dataplane

_META = ResourceMeta("1", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
LISTENER = "outbound:127.0.0.1:20000"


def mesh_timeout(name: str, section: str, default: dict[str, Any]) -> Any:
    """A MeshTimeout on the whole mesh with one rule for every peer in ``section``."""
    rule = {"targetRef": {"kind": "Mesh"}, "default": default}
    return from_document(
        {
            "type": "MeshTimeout",
            "mesh": "default",
            "name": name,
            "spec": {"targetRef": {"kind": "Mesh"}, section: [rule]},
        }
    )


def timeout(connect: str, request: str) -> Any:
    return mesh_timeout(
        "t", "to", {"connectionTimeout": connect, "http": {"requestTimeout": request}}
    )


def event(resource: Any) -> ResourceEvent:
    return ResourceEvent(Operation.UPDATE, resource, _META, 1)


def route_timeout(watch: Subscription, name: str = LISTENER) -> int:
    listener = listener_pb2.Listener.FromString(watch.resources(types.LISTENER)[name].body)
    manager = hcm_pb2.HttpConnectionManager.FromString(
        listener.filter_chains[0].filters[0].typed_config.value
    )
    return int(manager.route_config.virtual_hosts[0].routes[0].route.timeout.seconds)


def connect_timeout(watch: Subscription) -> int:
    cluster = cluster_pb2.Cluster.FromString(watch.resources(types.CLUSTER)["backend"].body)
    return int(cluster.connect_timeout.seconds)


def started() -> tuple[Engine, Subscription]:
    engine = Engine()
    engine.apply_now(
        [
            event(dataplane("b-1", "backend")),
            event(dataplane("web-1", "web", outbounds=("backend",))),
            event(timeout("2s", "3s")),
        ]
    )
    watch = engine.subscribe("default.web-1")
    watch.take_changes()
    return engine, watch


def test_the_fingerprint_has_a_part_per_resource_kind() -> None:
    web = dataplane("web-1", "web", outbounds=("backend",))
    prints = [
        outbound_fingerprint(resolve(web, {"MeshTimeout": [timeout(c, r)]}), "backend")
        for c, r in (("2s", "3s"), ("5s", "3s"), ("5s", "4s"))
    ]
    assert prints[0].listener == prints[1].listener != prints[2].listener
    assert prints[0].cluster != prints[1].cluster == prints[2].cluster


def test_a_cluster_only_change_reuses_the_listeners() -> None:
    engine, watch = started()
    listener = watch.resources(types.LISTENER)[LISTENER]
    engine.apply_now([event(timeout("5s", "3s"))])
    assert set(watch.take_changes()) == {types.CLUSTER}
    assert watch.resources(types.LISTENER)[LISTENER] is listener
    assert connect_timeout(watch) == 5

    engine.apply_now([event(timeout("5s", "4s"))])
    assert set(watch.take_changes()) == {types.LISTENER}
    assert route_timeout(watch) == 4


def test_a_listener_key_missing_a_field_would_serve_a_stale_listener(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check of the check: a MeshTimeout whose listener key leaves out the request
    timeout re-uses the old listener, so the test above would fail on such a key."""
    full = MeshTimeoutPlugin.outbound_listener_input

    def without_request_timeout(self: Any, policies: Any, rule: Any) -> Any:
        found = full(self, policies, rule)
        return found if found is None else found[:1] + found[2:]

    monkeypatch.setattr(MeshTimeoutPlugin, "outbound_listener_input", without_request_timeout)
    engine, watch = started()
    engine.apply_now([event(timeout("2s", "4s"))])
    assert route_timeout(watch) == 3


INBOUND = "inbound:10.0.0.1:10000"


def inbound_timeout(request: str) -> Any:
    return mesh_timeout("in", "from", {"http": {"requestTimeout": request}})


def inbound_route_timeout(watch: Subscription) -> int:
    return route_timeout(watch, INBOUND)


def counted_inbound_builds(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    builds: list[object] = []
    build = inbound_resources

    def counted(*args: Any) -> Any:
        builds.append(args)
        return build(*args)

    monkeypatch.setattr(proxy_memo, "inbound_resources", counted)  # as the memo calls it
    return builds


def test_a_to_change_reuses_the_inbounds_and_a_from_change_rebuilds_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine, watch = started()
    builds = counted_inbound_builds(monkeypatch)
    stats = engine.apply_now([event(timeout("2s", "4s"))])
    assert (stats.proxies_assembled, route_timeout(watch), builds) == (1, 4, [])
    engine.apply_now([event(inbound_timeout("7s"))])
    assert (len(builds), inbound_route_timeout(watch)) == (1, 7)  # web-1 (subscribed)
    engine.apply_now([event(inbound_timeout("8s"))])
    assert (len(builds), inbound_route_timeout(watch)) == (2, 8)


def test_an_inbound_key_missing_the_from_conf_would_serve_a_stale_inbound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check of the check: with MeshTimeout's inbound input blind to its conf, the
    ``from`` change above keeps the old inbound listener."""
    monkeypatch.setattr(MeshTimeoutPlugin, "inbound_input", lambda self, policies, inbound: 0)
    engine, watch = started()
    engine.apply_now([event(inbound_timeout("7s"))])
    engine.apply_now([event(inbound_timeout("8s"))])
    assert inbound_route_timeout(watch) == 0  # as before either change

"""Mesh metrics through the engine: turning a prometheus backend on (a Mesh event) gives every
proxy of that mesh its ``kuma:metrics:prometheus`` listener and hijacker cluster at the socket
its node metadata names; what the engine serves is what generation from scratch gives; turning
it off takes them away again."""

from __future__ import annotations

from datetime import UTC, datetime

from kuma.resources import Dataplane, Mesh, ResourceMeta, from_document
from kuma.store import Operation, ResourceEvent
from kuma.xds import types
from kuma.xds.engine import Engine, Subscription
from kuma.xds.generate import StaticMeshView, generate_proxy
from kuma.xds.generate.prometheus import SidecarMetrics
from kuma.xds.proxy_metadata import ProxyMetadata

_META = ResourceMeta("1", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
_SOCKET = "/run/kuma/mh-web-1.sock"


def _web(name: str) -> Dataplane:
    resource = from_document(
        {
            "type": "Dataplane",
            "mesh": "default",
            "name": name,
            "networking": {
                "address": "10.0.0.1",
                "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web"}}],
            },
        }
    )
    assert isinstance(resource, Dataplane)
    return resource


def _mesh(metrics: bool) -> Mesh:
    backends = [{"name": "prom", "type": "prometheus", "conf": {"port": 5671}}]
    spec = {"enabledBackend": "prom", "backends": backends} if metrics else None
    return Mesh(name="default", metrics=spec)


def _served(subscription: Subscription, type_url: str) -> dict[str, bytes]:
    return {n: r.body for n, r in subscription.resources(type_url).items()}


def test_mesh_metrics_change_reassembles_the_meshs_proxies() -> None:
    web1, web2 = _web("web-1"), _web("web-2")
    engine = Engine(default_admin_port=9901)
    inputs: tuple[Mesh | Dataplane, ...] = (_mesh(False), web1, web2)
    events = [ResourceEvent(Operation.CREATE, r, _META, i) for i, r in enumerate(inputs, 1)]
    engine.apply_now(events)
    first = engine.subscribe("default.web-1", ProxyMetadata(metrics=SidecarMetrics(_SOCKET)))
    second = engine.subscribe("default.web-2", ProxyMetadata())
    assert "kuma:metrics:prometheus" not in first.resources(types.LISTENER)
    first.take_changes()
    second.take_changes()

    engine.apply_now([ResourceEvent(Operation.UPDATE, _mesh(True), _META, 4)])
    for subscription, dataplane, socket in ((first, web1, _SOCKET), (second, web2, "")):
        changes = subscription.take_changes()
        assert "kuma:metrics:prometheus" in changes[types.LISTENER]
        assert "kuma:metrics:hijacker" in changes[types.CLUSTER]
        view = StaticMeshView([web1, web2], _mesh(True))
        scratch = generate_proxy(dataplane, view, 9901, metrics=SidecarMetrics(socket))
        for type_url in (types.CLUSTER, types.LISTENER):
            expected = {
                n: m.SerializeToString(deterministic=True) for n, m in scratch[type_url].items()
            }
            assert _served(subscription, type_url) == expected
    pipe = first.resources(types.CLUSTER)["kuma:metrics:hijacker"].body
    assert _SOCKET.encode() in pipe
    assert (
        b"/tmp/kuma-mh-web-2-default.sock"
        in second.resources(types.CLUSTER)["kuma:metrics:hijacker"].body
    )

    engine.apply_now([ResourceEvent(Operation.UPDATE, _mesh(False), _META, 5)])
    assert "kuma:metrics:prometheus" not in first.resources(types.LISTENER)
    assert "kuma:metrics:hijacker" not in second.resources(types.CLUSTER)

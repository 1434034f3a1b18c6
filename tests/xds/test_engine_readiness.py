"""A proxy whose kuma-dp reports readiness (node metadata ``dataplane.readinessReporter.port``)
gets ``kuma:readiness`` and its public ``/ready`` routed there; a reconnect without it goes
back to Envoy's own ``/ready``; what the engine serves is what generation from scratch gives."""

from __future__ import annotations

from datetime import UTC, datetime

from kuma.resources import Dataplane, ResourceMeta, from_document
from kuma.store import Operation, ResourceEvent
from kuma.xds import types
from kuma.xds.engine import Engine
from kuma.xds.generate import StaticMeshView, generate_proxy
from kuma.xds.proxy_metadata import ProxyMetadata

_META = ResourceMeta("1", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))


def _web() -> Dataplane:
    resource = from_document(
        {
            "type": "Dataplane",
            "mesh": "default",
            "name": "web-1",
            "networking": {
                "address": "10.0.0.1",
                "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web"}}],
            },
        }
    )
    assert isinstance(resource, Dataplane)
    return resource


def test_readiness_follows_the_proxys_metadata() -> None:
    web = _web()
    engine = Engine(default_admin_port=9901)
    engine.apply_now([ResourceEvent(Operation.CREATE, web, _META, 1)])
    reporting = engine.subscribe("default.web-1", ProxyMetadata(readiness_port=41234))
    clusters = reporting.resources(types.CLUSTER)
    assert "kuma:readiness" in clusters
    scratch = generate_proxy(web, StaticMeshView([web]), 9901, readiness_port=41234)
    for type_url in (types.CLUSTER, types.LISTENER):
        served = {n: r.body for n, r in reporting.resources(type_url).items()}
        expected = {
            n: m.SerializeToString(deterministic=True) for n, m in scratch[type_url].items()
        }
        assert served == expected
    reporting.take_changes()

    # kuma-dp restarted with the reporter off: the next stream's metadata wins.
    plain = engine.subscribe("default.web-1", ProxyMetadata())
    assert "kuma:readiness" not in plain.resources(types.CLUSTER)
    changes = reporting.take_changes()
    assert "kuma:readiness" in changes[types.CLUSTER]
    assert "kuma:envoy:admin" in changes[types.LISTENER]

"""The typed Mesh metrics (kuma/resources/metrics.py): Kuma v2.7.29's Mesh defaulter cases
(``mesh_defaulter_test.go``) and ``GetPrometheusConfig`` cases (``dataplane_helpers_test.go``),
as facts about Kuma's answers."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import yaml

from kuma.resources.metrics import (
    Aggregate,
    PrometheusConfig,
    Tls,
    enabled_prometheus,
    merge,
    prometheus_config,
    with_defaults,
)
from kuma.resources.model import Dataplane, Mesh


def _config(text: str) -> PrometheusConfig:
    return msgspec.convert(yaml.safe_load(text) or {}, PrometheusConfig)


@pytest.mark.parametrize(
    ("conf", "expected"),
    [
        # defaults not set
        (
            "{}",
            {
                "port": 5670,
                "path": "/metrics",
                "tags": {"kuma.io/service": "dataplane-metrics"},
                "tls": {},
            },
        ),
        # set: kept; an explicit activeMTLSBackend is the zero value
        (
            "{path: /p, port: 1234, tags: {kuma.io/service: m}, tls: {mode: activeMTLSBackend}}",
            {"path": "/p", "port": 1234, "tags": {"kuma.io/service": "m"}, "tls": {}},
        ),
        # skipMTLS: true becomes tls disabled
        (
            "{path: /p, port: 1234, tags: {kuma.io/service: m}, skipMTLS: true}",
            {
                "path": "/p",
                "port": 1234,
                "tags": {"kuma.io/service": "m"},
                "skipMTLS": True,
                "tls": {"mode": "disabled"},
            },
        ),
        # providedTLS kept
        (
            "{path: /p, port: 1234, tags: {kuma.io/service: m}, tls: {mode: providedTLS}}",
            {
                "path": "/p",
                "port": 1234,
                "tags": {"kuma.io/service": "m"},
                "tls": {"mode": "providedTLS"},
            },
        ),
        # providedTLS with skipMTLS: skipMTLS dropped
        (
            "{path: /p, port: 1234, tags: {kuma.io/service: m}, skipMTLS: false,"
            " tls: {mode: providedTLS}}",
            {
                "path": "/p",
                "port": 1234,
                "tags": {"kuma.io/service": "m"},
                "tls": {"mode": "providedTLS"},
            },
        ),
    ],
)
def test_kuma_mesh_defaulter(conf: str, expected: dict[str, Any]) -> None:
    assert msgspec.to_builtins(with_defaults(_config(conf))) == expected


MESH = """
metrics:
  enabledBackend: prometheus-1
  backends:
  - name: prometheus-1
    type: prometheus
    conf:
      port: 1234
      path: /non-standard-path
      aggregate: [{name: app1, port: 12345, path: /disabled}]
"""


def mesh_of(text: str, name: str = "demo") -> Mesh:
    return msgspec.convert({"type": "Mesh", "name": name, **(yaml.safe_load(text) or {})}, Mesh)


def dataplane_of(text: str, mesh: str = "demo") -> Dataplane:
    doc = yaml.safe_load(text) or {}
    return msgspec.convert(
        {"type": "Dataplane", "name": "backend-01", "mesh": mesh, **doc}, Dataplane
    )


DP = """
metrics:
  type: prometheus
  conf:
    port: 8765
    path: /even-more-non-standard-path
    aggregate: [{name: app1, port: 123, path: /stats, enabled: false}]
"""


def test_kuma_get_prometheus_config() -> None:
    # Nothing unless the Dataplane's own mesh enables a prometheus backend.
    assert prometheus_config(mesh_of(""), dataplane_of(DP)) is None
    assert prometheus_config(mesh_of(MESH, "default"), dataplane_of(DP)) is None
    # The Mesh's backend (with Kuma's defaults applied, as its defaulter stores them).
    only_mesh = prometheus_config(mesh_of(MESH), dataplane_of(""))
    assert only_mesh is not None
    assert (only_mesh.port, only_mesh.path) == (1234, "/non-standard-path")
    assert only_mesh.tls == Tls("activeMTLSBackend")
    # The Dataplane's override wins; aggregate entries merge by name.
    both = prometheus_config(mesh_of(MESH), dataplane_of(DP))
    assert both is not None
    assert (both.port, both.path) == (8765, "/even-more-non-standard-path")
    assert both.aggregate == (Aggregate(name="app1", port=123, path="/stats", enabled=False),)


def test_merge_is_protos() -> None:
    base = _config(
        "{port: 1, tags: {a: '1', b: '1'}, aggregate: [{name: x}, {name: y}],"
        " envoy: {usedOnly: true}}"
    )
    over = _config(
        "{tags: {b: '2'}, aggregate: [{name: z}], envoy: {filterRegex: 'a.*', usedOnly: false}}"
    )
    merged = merge(base, over)
    assert merged.port == 1
    assert merged.tags == {"a": "1", "b": "2"}
    assert [a.name for a in merged.aggregate] == ["x", "y", "z"]
    # proto.Merge of BoolValue: false does not replace true.
    assert merged.envoy is not None
    assert merged.envoy.used_only is True
    assert merged.envoy_query == "?filter=a.*&usedonly"


def test_other_backend_types_and_bad_conf_are_not_prometheus() -> None:
    enabled_other = "metrics: {enabledBackend: x, backends: [{name: x, type: other}]}"
    assert enabled_prometheus(mesh_of(enabled_other)) is None
    # Validation refuses such a document; reading it never raises.
    broken = (
        "metrics: {enabledBackend: x, backends: [{name: x, type: prometheus, conf: {port: nope}}]}"
    )
    assert enabled_prometheus(mesh_of(broken)) is None

"""Monitoring assignments against Kuma's own generator cases (tests/data/kuma_mads_cases.json,
from kuma v2.7.29 ``pkg/mads/v1/generator/assignments_test.go``), plus what the table does not
cover: the Dataplane's own TLS mode, advertised and IPv6 addresses, builtin gateways."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kuma.mads.assignments import TYPE_URL, assignment_name, monitoring_assignment
from kuma.resources import Dataplane, Mesh, from_document

CASES = json.loads((Path(__file__).parents[1] / "data" / "kuma_mads_cases.json").read_text())
_PROM = {"name": "p", "type": "prometheus"}


def _generate(meshes: list[Mesh], dataplanes: list[Dataplane]) -> list[dict[str, Any]]:
    """What Kuma's generator returns for these inputs: name and resource, in input order."""
    index = {mesh.name: mesh for mesh in meshes}
    out = []
    for dataplane in dataplanes:
        document = monitoring_assignment(index.get(dataplane.mesh), dataplane)
        if document is not None:
            assert document.pop("@type") == TYPE_URL
            out.append({"name": assignment_name(dataplane), "resource": document})
    return out


@pytest.mark.parametrize("case", CASES["cases"], ids=lambda case: case["name"])
def test_kuma_generator_cases(case: dict[str, Any]) -> None:
    meshes = [from_document(doc) for doc in case["meshes"]]
    dataplanes = [from_document(doc) for doc in case["dataplanes"]]
    assert all(isinstance(m, Mesh) for m in meshes)
    assert all(isinstance(d, Dataplane) for d in dataplanes)
    assert _generate(meshes, dataplanes) == case["expected"]  # type: ignore[arg-type]


def _mesh(conf: dict[str, Any] | None) -> Mesh:
    metrics = {"enabledBackend": "p", "backends": [{**_PROM, "conf": conf}]}
    return Mesh(name="m", metrics=metrics)


def _dataplane(networking: dict[str, Any], metrics: dict[str, Any] | None = None) -> Dataplane:
    doc: dict[str, Any] = {"type": "Dataplane", "mesh": "m", "name": "d", "networking": networking}
    if metrics is not None:
        doc["metrics"] = metrics
    resource = from_document(doc)
    assert isinstance(resource, Dataplane)
    return resource


_WEB = {"port": 80, "tags": {"kuma.io/service": "web"}}


def test_defaults_advertised_and_ipv6_addresses() -> None:
    # Kuma's defaulter: port 5670, /metrics. GetIP: advertisedAddress first.
    plain = monitoring_assignment(
        _mesh(None), _dataplane({"address": "10.0.0.1", "inbound": [_WEB]})
    )
    assert plain is not None
    assert plain["targets"][0]["address"] == "10.0.0.1:5670"
    assert plain["targets"][0]["metrics_path"] == "/metrics"
    advertised = _dataplane(
        {"address": "10.0.0.1", "advertisedAddress": "1.2.3.4", "inbound": [_WEB]}
    )
    assert monitoring_assignment(_mesh(None), advertised)["targets"][0]["address"] == (  # type: ignore[index]
        "1.2.3.4:5670"
    )
    ipv6 = _dataplane({"address": "fd00::1", "inbound": [_WEB]})
    assert monitoring_assignment(_mesh(None), ipv6)["targets"][0]["address"] == "[fd00::1]:5670"  # type: ignore[index]


def test_dataplane_override_sets_scheme_and_port() -> None:
    own = {**_PROM, "conf": {"port": 9000, "tls": {"mode": "providedTLS"}}}
    document = monitoring_assignment(
        _mesh({"port": 1234}), _dataplane({"address": "10.0.0.1", "inbound": [_WEB]}, own)
    )
    assert document is not None
    assert document["targets"][0]["scheme"] == "https"
    assert document["targets"][0]["address"] == "10.0.0.1:9000"
    # activeMTLSBackend (the default) and disabled: http.
    for mode in ("activeMTLSBackend", "disabled"):
        conf = {"tls": {"mode": mode}}
        dp = _dataplane({"address": "10.0.0.1", "inbound": [_WEB]})
        assert monitoring_assignment(_mesh(conf), dp)["targets"][0]["scheme"] == "http"  # type: ignore[index]


def test_service_unknown_and_builtin_gateway_label() -> None:
    bare = monitoring_assignment(_mesh(None), _dataplane({"address": "10.0.0.1"}))
    assert bare is not None
    assert bare["service"] == "unknown"
    assert "labels" not in bare["targets"][0]
    gateway = {"tags": {"kuma.io/service": "edge"}, "type": "BUILTIN"}
    builtin = monitoring_assignment(
        _mesh(None), _dataplane({"address": "10.0.0.1", "gateway": gateway})
    )
    assert builtin is not None
    assert builtin["targets"][0]["labels"]["kuma_io_mesh_gateway"] == ""


def test_other_backend_type_or_other_mesh_is_not_scraped() -> None:
    dp = _dataplane({"address": "10.0.0.1", "inbound": [_WEB]})
    other = Mesh(
        name="m", metrics={"enabledBackend": "x", "backends": [{"name": "x", "type": "otel"}]}
    )
    assert monitoring_assignment(other, dp) is None
    assert monitoring_assignment(Mesh(name="other", metrics=_mesh(None).metrics), dp) is None

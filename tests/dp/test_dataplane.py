"""The Dataplane template kuma-dp runs with: variables, reading, checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from kuma.dp.dataplane import DataplaneError, load_dataplane, parse_vars, read_template, render

TEMPLATE = """\
type: Dataplane
mesh: {{ mesh }}
name: {{name}}
networking:
  address: {{ address }}
  inbound:
  - port: 18080
    servicePort: 8080
    tags:
      kuma.io/service: web
"""
VALUES = {"mesh": "default", "name": "web-01", "address": "10.0.0.1"}


def test_render_fills_every_placeholder() -> None:
    text = render(TEMPLATE, VALUES)
    assert "{{" not in text
    assert "name: web-01" in text
    assert "address: 10.0.0.1" in text


def test_a_missing_variable_is_named() -> None:
    with pytest.raises(DataplaneError) as caught:
        render(TEMPLATE, {"mesh": "default"})
    message = str(caught.value)
    assert "'address', 'name'" in message
    assert "-v/--dataplane-var address=VALUE" in message


def test_values_may_hold_equals_signs_and_be_empty() -> None:
    assert parse_vars(["a=b=c", "empty="]) == {"a": "b=c", "empty": ""}


@pytest.mark.parametrize("pair", ["novalue", "=x"])
def test_malformed_vars(pair: str) -> None:
    with pytest.raises(DataplaneError, match="expected KEY=VALUE"):
        parse_vars([pair])


def test_load_gives_a_checked_dataplane() -> None:
    dataplane = load_dataplane(TEMPLATE, VALUES, source="dp.yaml")
    assert (dataplane.mesh_name, dataplane.name) == ("default", "web-01")


def test_load_lists_every_violation_with_its_field() -> None:
    with pytest.raises(DataplaneError) as caught:
        load_dataplane(
            TEMPLATE, {**VALUES, "address": "0.0.0.0", "name": "Web_01"}, source="dp.yaml"
        )
    message = str(caught.value)
    assert message.startswith("dp.yaml is not a valid Dataplane:")
    assert "  networking.address: must not be 0.0.0.0 or ::" in message
    assert "  name: " in message


def test_load_refuses_other_resources_and_bad_documents() -> None:
    with pytest.raises(DataplaneError, match="type: must be Dataplane"):
        load_dataplane("type: Mesh\nname: default\n", {}, source="x")
    with pytest.raises(DataplaneError, match=r"networking\.adress: unknown field"):
        load_dataplane(TEMPLATE.replace("address:", "adress:"), VALUES, source="x")


def test_transparent_proxy_with_outbounds_is_refused_locally() -> None:
    text = render(TEMPLATE, VALUES) + (
        "  outbound:\n  - port: 10001\n    tags: {kuma.io/service: backend}\n"
        "  transparentProxying: {redirectPortInbound: 15006, redirectPortOutbound: 15001}\n"
    )
    with pytest.raises(DataplaneError, match=r"networking\.outbound: should be empty"):
        load_dataplane(text, {}, source="x")


def test_read_template(tmp_path: Path) -> None:
    path = tmp_path / "dp.yaml"
    path.write_text(TEMPLATE)
    assert read_template(str(path), None) == TEMPLATE
    assert read_template(None, "inline") == "inline"
    assert read_template(None, None) is None
    with pytest.raises(DataplaneError, match="cannot be used together"):
        read_template(str(path), "inline")
    with pytest.raises(DataplaneError, match=r"cannot read .*missing\.yaml"):
        read_template(str(tmp_path / "missing.yaml"), None)

"""Where kumactl finds the API server and the token, the ``-v`` template, and how API error
replies are turned into kumactl's messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from kuma.cli.errors import CliError, from_response
from kuma.cli.settings import DEFAULT_API_SERVER, Target, resolve
from kuma.cli.template import parse_assignments, render

CONFIG = """\
currentContext: second
contexts:
- name: first
  controlPlane: one
- name: second
  controlPlane: two
controlPlanes:
- name: one
  coordinates:
    apiServer:
      url: http://one:5681
- name: two
  coordinates:
    apiServer:
      url: https://two:5682
      authType: tokens
      authConf:
        token: from-file
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config"
    path.write_text(CONFIG)
    return path


def test_precedence(config: Path, tmp_path: Path) -> None:
    env = {"KUMACTL_API_SERVER": "http://env:1", "KUMACTL_AUTH_TOKEN": "env-token"}
    assert resolve("http://flag:2", config, env) == Target("http://flag:2", "env-token")
    assert resolve(None, config, env) == Target("http://env:1", "env-token")
    assert resolve(None, config, {}) == Target("https://two:5682", "from-file")
    assert resolve(None, None, {"KUMACTL_CONFIG": str(config)}) == Target(
        "https://two:5682", "from-file"
    )
    missing = tmp_path / "missing"
    assert resolve(None, missing, {}) == Target(DEFAULT_API_SERVER, None)
    assert DEFAULT_API_SERVER == "http://127.0.0.1:5681"


def test_the_home_config_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".kumactl").mkdir()
    (tmp_path / ".kumactl" / "config").write_text(CONFIG)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve(None, None, {}) == Target("https://two:5682", "from-file")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("currentContext: nope\ncontexts: []\n", "currentContext 'nope' is not defined"),
        (
            "currentContext: a\ncontexts:\n- {name: a, controlPlane: b}\n",
            "control plane 'b' of context 'a' is not defined",
        ),
        ("[1, 2]\n", "must be a mapping"),
        ("a: [\n", "is not valid YAML"),
    ],
)
def test_broken_configs_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config"
    path.write_text(text)
    with pytest.raises(CliError, match=message) as raised:
        resolve(None, path, {})
    assert str(path) in raised.value.message


def test_the_url_must_be_http() -> None:
    with pytest.raises(CliError, match="must be an http:// or https:// URL"):
        resolve("127.0.0.1:5681", None, {"KUMACTL_CONFIG": "/nonexistent"})


def test_template() -> None:
    values = parse_assignments(["a=1", "b=x=y", "c.d=", "e=with space"])
    assert values == {"a": "1", "b": "x=y", "c.d": "", "e": "with space"}
    text = "{{a}} {{ b }} {{{c.d}}} {{& e }} <{{ a }}> {not} {{ }}"
    assert render(text, values) == "1 x=y  with space <1> {not} {{ }}"
    assert render("no variables: {", {}) == "no variables: {"
    with pytest.raises(CliError, match=r"variable\(s\) without a value: x, y\.z "):
        render("{{ y.z }} {{x}} {{x}}", {})
    for bad in ("novalue", "=1"):
        with pytest.raises(CliError, match="expected NAME=VALUE"):
            parse_assignments([bad])


def test_error_replies() -> None:
    kuma = (
        b'{"type":"/std-errors","status":400,"title":"Could not create a resource",'
        b'"detail":"Resource is not valid","invalid_parameters":[{"field":"a","reason":"b"}],'
        b'"details":"Resource is not valid","causes":[{"field":"a","message":"b"}]}'
    )
    assert from_response(400, kuma).render() == (
        "Could not create a resource (Resource is not valid)\n* a: b"
    )
    legacy = b'{"title":"T","details":"D","causes":[{"field":"f","message":"m"}]}'
    assert from_response(400, legacy).render() == "T (D)\n* f: m"
    assert from_response(502, b"<html>bad gateway</html>").render() == (
        "(502): <html>bad gateway</html>"
    )
    assert from_response(500, b"[1]").status == 500

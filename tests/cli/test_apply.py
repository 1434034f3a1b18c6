"""kumactl apply: files and stdin, several documents, variables, dry runs, and errors (nothing
is written when any document is bad)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import DATA, Kumactl, run_process, running_cp

DATAPLANE = """\
type: Dataplane
mesh: {{ mesh }}
name: {{name}}
networking:
  address: {{{ address }}}
  inbound:
  - port: {{& net.port }}
    tags:
      kuma.io/service: web
"""


@pytest.fixture(scope="module")
def kumactl() -> Iterator[Kumactl]:
    with running_cp() as cp:
        yield Kumactl(cp.url)


def _names(kumactl: Kumactl, *argv: str) -> list[str]:
    return [item["name"] for item in json.loads(kumactl.ok(*argv, "-o", "json"))["items"]]


def test_apply_several_documents_then_update(kumactl: Kumactl, tmp_path: Path) -> None:
    file = tmp_path / "two.yaml"
    file.write_text(
        "type: Mesh\nname: apply-a\n---\n"
        "type: Dataplane\nmesh: apply-a\nname: dp-1\nnetworking:\n  address: 10.0.0.1\n"
        "  inbound:\n  - port: 8080\n    tags: {kuma.io/service: web}\n"
    )
    assert kumactl.ok("apply", "-f", str(file)) == ""
    assert _names(kumactl, "get", "dataplanes", "-m", "apply-a") == ["dp-1"]
    file.write_text(file.read_text().replace("8080", "9090"))
    kumactl.ok("apply", "-f", str(file))
    got = json.loads(kumactl.ok("get", "dataplane", "dp-1", "-m", "apply-a", "-o", "json"))
    assert got["networking"]["inbound"][0]["port"] == 9090


def test_apply_with_variables(kumactl: Kumactl, tmp_path: Path) -> None:
    file = tmp_path / "template.yaml"
    file.write_text(DATAPLANE)
    kumactl.ok(
        "apply",
        "-f",
        str(file),
        "-v",
        "mesh=default",
        "-v",
        "name=templated",
        "--var",
        "address=10.9.9.9",
        "-v",
        "net.port=7070",
    )
    got = json.loads(kumactl.ok("get", "dataplane", "templated", "-o", "json"))
    assert got["networking"]["address"] == "10.9.9.9"
    assert got["networking"]["inbound"][0]["port"] == 7070


def test_a_missing_variable_is_named_and_nothing_is_written(
    kumactl: Kumactl, tmp_path: Path
) -> None:
    file = tmp_path / "template.yaml"
    file.write_text(DATAPLANE)
    result = kumactl("apply", "-f", str(file), "-v", "mesh=default", "-v", "name=never")
    assert result.code == 1
    assert result.err == (
        "Error: variable(s) without a value: address, net.port (give each with -v NAME=VALUE)\n"
    )
    assert kumactl("get", "dataplane", "never").code == 1


def test_dry_run_prints_the_resolved_resources_and_writes_nothing(
    kumactl: Kumactl, tmp_path: Path
) -> None:
    file = tmp_path / "template.yaml"
    file.write_text(DATAPLANE)
    out = kumactl.ok(
        "apply",
        "-f",
        str(file),
        "--dry-run",
        "-v",
        "mesh=no-such-mesh",
        "-v",
        "name=dry",
        "-v",
        "address=10.0.0.5",
        "-v",
        "net.port=80",
    )
    assert out == (
        "type: Dataplane\nmesh: no-such-mesh\nname: dry\nnetworking:\n  address: 10.0.0.5\n"
        "  inbound:\n  - port: 80\n    tags:\n      kuma.io/service: web\n"
    )
    assert kumactl("get", "dataplane", "dry", "-m", "no-such-mesh").code == 1


def test_dry_run_needs_no_server(tmp_path: Path) -> None:
    offline = Kumactl("http://127.0.0.1:9")
    assert offline.ok("apply", "--dry-run", "-f", str(DATA / "fleet.yaml")).count("---") == 10


def test_dry_run_validates_locally(tmp_path: Path) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text(
        "type: Mesh\nname: fine\n---\n"
        "type: Dataplane\nmesh: default\nname: bad\nnetworking:\n  address: 0.0.0.0\n"
        "  inbound:\n  - port: 70000\n    tags: {version: v1}\n"
    )
    result = Kumactl("http://127.0.0.1:9")("apply", "--dry-run", "-f", str(file))
    assert (result.code, result.out) == (1, "")
    assert result.err == (
        "Error: Could not process a resource (Resource is not valid: Dataplane default/bad)\n"
        "* networking.address: must not be 0.0.0.0 or ::\n"
        "* networking.inbound[0].port: port must be in the range [1, 65535]\n"
        '* networking.inbound[0].tags["kuma.io/service"]: tag has to exist\n'
    )


def test_one_bad_document_writes_nothing(kumactl: Kumactl, tmp_path: Path) -> None:
    file = tmp_path / "mixed.yaml"
    file.write_text(
        "type: Mesh\nname: must-not-exist\n---\n"
        "type: Dataplane\nmesh: default\nname: bad\nnetworking:\n  address: 10.0.0.1\n"
    )
    result = kumactl("apply", "-f", str(file))
    assert result.code == 1
    assert "networking: has to contain at least one inbound interface or gateway" in result.err
    assert "must-not-exist" not in _names(kumactl, "get", "meshes")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "type: Mesh\nname: x\n---\ntype: Dataplane\nmesh: default\nname: y\nnetworking: [\n",
            "Error: YAML contains invalid resource: {file}:8: invalid YAML: did not find",
        ),
        (
            "type: Mesh\nname: x\n---\ntype: Dataplane\nname: y\nnetworking:\n  adress: 1.1.1.1\n",
            "Error: YAML contains invalid resource: {file}:7 (document 2): "
            "networking.adress: unknown field\n",
        ),
        ("# nothing\n", "Error: no resource(s) passed to apply\n"),
    ],
)
def test_decode_errors_name_file_line_and_field(
    kumactl: Kumactl, tmp_path: Path, content: str, message: str
) -> None:
    file = tmp_path / "broken.yaml"
    file.write_text(content)
    result = kumactl("apply", "-f", str(file))
    assert result.code == 1
    assert result.err.startswith(message.format(file=file)), result.err
    assert "x" not in _names(kumactl, "get", "meshes")


def test_a_missing_file(kumactl: Kumactl, tmp_path: Path) -> None:
    result = kumactl("apply", "-f", str(tmp_path / "nope.yaml"))
    assert result.code == 1
    assert result.err == (
        f"Error: error while reading provided file {tmp_path / 'nope.yaml'}: "
        "No such file or directory\n"
    )


def test_server_errors_are_printed_as_kuma_prints_them(kumactl: Kumactl, tmp_path: Path) -> None:
    file = tmp_path / "orphan.yaml"
    file.write_text(DATAPLANE)
    result = kumactl(
        "apply",
        "-f",
        str(file),
        "-v",
        "mesh=ghost",
        "-v",
        "name=orphan",
        "-v",
        "address=10.0.0.1",
        "-v",
        "net.port=80",
    )
    assert result.code == 1
    assert result.err == (
        "Error: Could not create a resource (Mesh is not found)\n"
        "* mesh: mesh of name ghost is not found\n"
    )


def test_apply_from_stdin_as_a_process(kumactl: Kumactl) -> None:
    env = dict(kumactl.env)
    result = run_process("apply", "-f", "-", env=env, stdin="type: Mesh\nname: from-stdin\n")
    assert (result.code, result.out, result.err) == (0, "", "")
    assert "from-stdin" in _names(kumactl, "get", "meshes")
    bad = run_process("apply", "-f", "-", env=env, stdin="type: Mesh\nname: Bad_Name\n")
    assert bad.code == 1
    assert bad.err.startswith(
        "Error: Could not process a resource (Resource is not valid: Mesh Bad_Name)\n* name: "
    )

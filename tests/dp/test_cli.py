"""kuma-dp's flags: Kuma's names, defaults, and everything refused before the control plane is
contacted."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kuma.dp.cli import UsageError, options_from, parser
from kuma.dp.dataplane import DataplaneError
from kuma.resources import ZoneIngress
from kuma.tls.certs import generate_ca_certificate

DATAPLANE = """\
type: Dataplane
mesh: default
name: {{ name }}
networking:
  address: 127.0.0.1
  inbound:
  - port: 18080
    servicePort: 8080
    tags:
      kuma.io/service: web
"""


@pytest.fixture
def dataplane_file(tmp_path: Path) -> Path:
    path = tmp_path / "dp.yaml"
    path.write_text(DATAPLANE)
    return path


def test_kumas_defaults(tmp_path: Path) -> None:
    # TLS by default, and never unverified unless asked: no CA, no connection.
    with pytest.raises(UsageError, match=r"refusing to connect to https://localhost:5678 .*"
                       r"--ca-cert-file .* --skip-verify"):  # fmt: skip
        options_from(parser().parse_args(["run", "--name", "web-01", "--mesh", "default"]))
    ca = tmp_path / "ca.crt"
    ca.write_bytes(generate_ca_certificate(["localhost"])[0])
    args = parser().parse_args(
        ["run", "--name", "web-01", "--mesh", "default", "--ca-cert-file", str(ca)]
    )
    options = options_from(args)
    assert options.ca_cert == ca.read_text()
    assert not options.skip_verify
    assert options.cp_address == "https://localhost:5678"
    assert options.dataplane is None
    assert (options.mesh, options.name, options.proxy_type) == ("default", "web-01", "dataplane")
    assert options.drain_time == 30.0
    assert options.envoy_log_level == "info"
    assert options.binary_path is None
    assert options.config_dir is None
    assert options.concurrency is None


def test_every_flag(dataplane_file: Path, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("secret\n")
    args = parser().parse_args(
        [
            "run",
            "--cp-address=http://cp:5678",
            "-d", str(dataplane_file),
            "-v", "name=web-02",
            "--binary-path=/opt/envoy",
            "--config-dir", str(tmp_path / "cfg"),
            "--concurrency=2",
            "--drain-time=1m30s",
            "--envoy-log-level=debug",
            "--dataplane-token-file", str(token),
        ]
    )  # fmt: skip
    options = options_from(args)
    assert options.cp_address == "http://cp:5678"
    assert options.dataplane is not None
    assert options.dataplane.name == "web-02"
    assert options.binary_path == "/opt/envoy"
    assert options.config_dir == tmp_path / "cfg"
    assert options.concurrency == 2
    assert options.drain_time == 90.0
    assert options.envoy_log_level == "debug"
    assert options.token == "secret"


def test_inline_dataplane_and_repeated_vars() -> None:
    inline = DATAPLANE.replace("mesh: default", "mesh: {{ mesh }}")
    args = parser().parse_args(
        [
            "run",
            "--dataplane",
            inline,
            "--dataplane-var",
            "name=x",
            "-v",
            "mesh=default",
            "--skip-verify",
        ]
    )
    dataplane = options_from(args).dataplane
    assert dataplane is not None
    assert (dataplane.mesh_name, dataplane.name) == ("default", "x")


def test_an_ingress_brings_a_zone_ingress_or_names_a_stored_one() -> None:
    ingress = "type: ZoneIngress\nname: zi-1\nnetworking: {address: 10.0.0.9, port: 10001}\n"
    run = ["run", "--proxy-type", "ingress", "--skip-verify"]
    options = options_from(parser().parse_args([*run, "--dataplane", ingress]))
    assert isinstance(options.dataplane, ZoneIngress)
    assert options.proxy_type == "ingress"
    assert options_from(parser().parse_args([*run, "--name", "zi-1"])).name == "zi-1"
    with pytest.raises(DataplaneError, match="not a valid ZoneIngress"):
        options_from(parser().parse_args([*run, "--dataplane", DATAPLANE, "-v", "name=x"]))


@pytest.mark.parametrize(
    ("argv", "error", "message"),
    [
        ([], UsageError, "--name and --mesh"),
        (["--cp-address", "localhost:5678", "--name=a", "--mesh=b"], UsageError, "expected a URL"),
        (["--name", "web-01"], UsageError, "--name and --mesh"),
        (["-v", "a=b", "--name", "x", "--mesh", "m"], UsageError, "needs a Dataplane template"),
        (["-d", "{file}"], DataplaneError, "uses 'name' but no value"),
        (["-d", "{file}", "-v", "name=web-01", "--name", "other"], UsageError, "differs"),
        (["-d", "{file}", "-v", "name=web-01", "--mesh", "other"], UsageError, "differs"),
        (["-d", "{file}", "--dataplane", "x", "-v", "name=a"], DataplaneError, "together"),
        (["--name=a", "--mesh=b", "--metrics-cert-path=c.pem"], UsageError, "go together"),
    ],
)
def test_refused_combinations(
    dataplane_file: Path, argv: list[str], error: type[Exception], message: str
) -> None:
    args = parser().parse_args(["run", *(a.replace("{file}", str(dataplane_file)) for a in argv)])
    with pytest.raises(error, match=message):
        options_from(args)


def test_name_and_mesh_may_repeat_the_dataplanes(dataplane_file: Path) -> None:
    args = parser().parse_args(
        [
            "run",
            "-d",
            str(dataplane_file),
            "-v",
            "name=web-01",
            "--name=web-01",
            "--mesh=default",
            "--skip-verify",
        ]
    )
    assert options_from(args).dataplane is not None


@pytest.mark.parametrize(
    "argv",
    [
        ["--drain-time", "soon"],
        ["--drain-time", "-1s"],
        ["--concurrency", "0"],
        ["--envoy-log-level", "loud"],
        ["--proxy-type", "gateway"],
    ],
)
def test_bad_flag_values_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        parser().parse_args(["run", *argv])
    assert caught.value.code == 2


@pytest.fixture
def listener() -> Iterator[tuple[int, list[socket.socket]]]:
    """A port that records every connection made to it."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (close alone does not)
    server.close()
    thread.join(timeout=5)
    for connection in accepted:
        connection.close()


def test_an_invalid_dataplane_is_refused_before_the_control_plane_is_contacted(
    dataplane_file: Path, listener: tuple[int, list[socket.socket]]
) -> None:
    port, accepted = listener
    result = subprocess.run(
        [
            sys.executable, "-m", "kuma.dp.cli", "run",
            "--cp-address", f"http://127.0.0.1:{port}",
            "-d", str(dataplane_file),
            "-v", "name=Not_Valid",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "is not a valid Dataplane" in result.stderr
    assert "  name: " in result.stderr
    assert accepted == []


def test_a_missing_variable_is_refused_before_the_control_plane_is_contacted(
    dataplane_file: Path, listener: tuple[int, list[socket.socket]]
) -> None:
    port, accepted = listener
    result = subprocess.run(
        [sys.executable, "-m", "kuma.dp.cli", "run", "--cp-address", f"http://127.0.0.1:{port}",
         "-d", str(dataplane_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "kuma-dp: the Dataplane template uses 'name' but no value was given" in result.stderr
    assert accepted == []


def test_dns_flags() -> None:
    base = ["run", "--name", "web-01", "--mesh", "default", "--skip-verify"]
    assert options_from(parser().parse_args(base)).dns_port == 15053
    assert options_from(parser().parse_args([*base, "--dns-port", "16053"])).dns_port == 16053
    # Kuma's name for the port iptables redirects DNS to.
    assert options_from(parser().parse_args([*base, "--dns-coredns-port=17053"])).dns_port == 17053
    assert options_from(parser().parse_args([*base, "--dns-enabled=false"])).dns_port == 0
    assert options_from(parser().parse_args([*base, "--dns-enabled"])).dns_port == 15053


def test_metrics_certificate_files_are_absolute(monkeypatch: pytest.MonkeyPatch) -> None:
    base = ["run", "--name", "web-01", "--mesh", "default", "--skip-verify"]
    monkeypatch.chdir("/tmp")
    given = [*base, "--metrics-cert-path", "m.crt", "--metrics-key-path", "/k/m.key"]
    options = options_from(parser().parse_args(given))
    assert (options.metrics_cert_path, options.metrics_key_path) == ("/tmp/m.crt", "/k/m.key")
    assert options_from(parser().parse_args(base)).metrics_cert_path == ""


def test_readiness_port(monkeypatch: pytest.MonkeyPatch) -> None:
    base = ["run", "--name", "web-01", "--mesh", "default", "--skip-verify"]

    def readiness(*argv: str) -> tuple[bool, int]:
        options = options_from(parser().parse_args([*base, *argv]))
        return options.readiness, options.readiness_port

    monkeypatch.delenv("KUMA_READINESS_PORT", raising=False)
    assert readiness() == (True, 0)  # on, a free port
    assert readiness("--readiness-port", "19902") == (True, 19902)
    assert readiness("--readiness-port", "0") == (False, 0)  # Kuma's "off"
    monkeypatch.setenv("KUMA_READINESS_PORT", "9902")
    assert readiness() == (True, 9902)
    assert readiness("--readiness-port", "19903") == (True, 19903)  # the flag wins
    monkeypatch.setenv("KUMA_READINESS_PORT", "nine")
    with pytest.raises(UsageError, match="KUMA_READINESS_PORT='nine'"):
        readiness()
    with pytest.raises(SystemExit):
        parser().parse_args([*base, "--readiness-port", "70000"])


def test_ca_and_token_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    pem = generate_ca_certificate(["localhost"])[0].decode()
    monkeypatch.setenv("KUMA_DATAPLANE_RUNTIME_TOKEN_PATH", str(token))
    monkeypatch.setenv("KUMA_CONTROL_PLANE_CA_CERT", pem)
    options = options_from(parser().parse_args(["run", "--name", "a", "--mesh", "default"]))
    assert (options.token, options.ca_cert) == ("t0ken", pem)
    monkeypatch.setenv("KUMA_CONTROL_PLANE_CA_CERT", "not a certificate")
    with pytest.raises(UsageError, match="not a PEM certificate"):
        options_from(parser().parse_args(["run", "--name", "a", "--mesh", "default"]))

"""kuma-cp as a user runs it: a real process, its own session, stopped by PID."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import kuma
from kuma.resources import decode
from tests.fixtures.processes import kuma_cp

DATAPLANE = """\
type: Dataplane
mesh: default
name: web-01
networking:
  address: 127.0.0.1
  inbound:
  - port: 18080
    servicePort: 8080
    tags:
      kuma.io/service: web
"""


def wait_for_file(path: Path, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return path.read_text()
        time.sleep(0.02)
    raise AssertionError(f"{path} never appeared")


# Loopback and a free port chosen by the OS (the process logs the one it bound).
LOOPBACK = {
    "KUMA_DP_SERVER_INTERFACE": "127.0.0.1",
    "KUMA_DP_SERVER_PORT": "0",
    "KUMA_API_SERVER_HTTP_PORT": "0",
}


def directory_env(folder: Path) -> dict[str, str]:
    return {"KUMA_STORE_TYPE": "directory", "KUMA_STORE_DIRECTORY_PATH": str(folder), **LOOPBACK}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_runs_on_the_directory_store_and_stops_cleanly(tmp_path: Path, signum: int) -> None:
    folder = tmp_path / "resources"
    cp = kuma_cp(None, env=directory_env(folder))
    try:
        cp.wait_for_line("kuma-cp is ready")
        assert cp.count("created the default mesh") == 1
        meshes = [
            r for f in folder.glob("*.yaml") for r in decode(f.read_text()) if r.TYPE == "Mesh"
        ]
        assert [m.name for m in meshes] == ["default"]

        (folder / "web-01.yaml").write_text(DATAPLANE)
        line = cp.wait_for_line("name=web-01")
        assert "operation=CREATE" in line
        assert "type=Dataplane" in line

        cp.signal(signum)
        assert cp.wait() == 0
        assert "kuma-cp stopped" in cp.output()
    finally:
        cp.stop()


def test_the_default_mesh_is_not_created_twice(tmp_path: Path) -> None:
    folder = tmp_path / "resources"
    for _ in range(2):
        cp = kuma_cp(None, env=directory_env(folder))
        try:
            cp.wait_for_line("kuma-cp is ready")
            created = cp.count("created the default mesh")
        finally:
            assert cp.stop() == 0
    assert created == 0
    stored = sorted((r.TYPE, r.name) for f in folder.glob("*.yaml") for r in decode(f.read_text()))
    # The mesh and, created with it once, its dataplane-token signing key and Kuma's four
    # default policies; the zone-token key; the control plane's generated TLS certificate.
    assert stored == [
        ("GlobalSecret", "control-plane-tls"),
        ("GlobalSecret", "zone-token-signing-key-1"),
        ("Mesh", "default"),
        ("MeshCircuitBreaker", "mesh-circuit-breaker-all-default"),
        ("MeshRetry", "mesh-retry-all-default"),
        ("MeshTimeout", "mesh-gateways-timeout-all-default"),
        ("MeshTimeout", "mesh-timeout-all-default"),
        ("Secret", "dataplane-token-signing-key-default-1"),
    ]


def test_skip_mesh_creation(tmp_path: Path) -> None:
    folder = tmp_path / "resources"
    env = {**directory_env(folder), "KUMA_DEFAULTS_SKIP_MESH_CREATION": "true"}
    cp = kuma_cp(None, env=env)
    try:
        cp.wait_for_line("kuma-cp is ready")
        # No mesh, so no dataplane-token key; the zone-token key and the TLS certificate.
        assert sorted(f.name for f in folder.glob("*.yaml")) == [
            "globalsecret-control-plane-tls.yaml",
            "globalsecret-zone-token-signing-key-1.yaml",
        ]
    finally:
        assert cp.stop() == 0


def test_config_file(tmp_path: Path) -> None:
    config = tmp_path / "cp.yml"
    folder = tmp_path / "from-file"
    config.write_text(
        f"store:\n  type: directory\n  directory:\n    path: {folder}\n"
        "dpServer:\n  interface: 127.0.0.1\n  port: 0\n"
        "apiServer:\n  http:\n    port: 0\n"
    )
    cp = kuma_cp(config)
    try:
        cp.wait_for_line("kuma-cp is ready")
        assert "store=directory" in cp.output()
        wait_for_file(next(iter(folder.glob("*.yaml"))))
    finally:
        assert cp.stop() == 0


@pytest.mark.parametrize(
    ("env", "code", "message"),
    [
        ({"KUMA_DP_SERVER_PORT": "abc"}, 2, "dpServer.port"),
        ({"KUMA_STORE_TYPE": "nope"}, 2, "store.type: unknown store 'nope'; installed:"),
        ({"KUMA_STORE_TYPE": "directory"}, 2, "store.directory.path"),
        ({"KUMA_STORE_TYPE": "memory", "KUMA_STORE_MEMORY_SIZE": "1"}, 2, "store.memory"),
    ],
)
def test_bad_configuration_stops_start_up(
    tmp_path: Path, env: dict[str, str], code: int, message: str
) -> None:
    """One shape for every configuration mistake (issue 17, defect 9): ``configuration
    error`` naming the key, status 2, before anything is announced."""
    result = run_cp(tmp_path, {**LOOPBACK, **env})
    assert result.returncode == code, result.stderr
    assert f"kuma-cp: configuration error: {message}" in result.stderr
    assert "listening" not in result.stderr
    assert "ready" not in result.stderr


def run_cp(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kuma.cp.cli", "run", *args],
        env={**env, "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_busy_port_and_a_binary_config_file_are_configuration_errors(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        busy = run_cp(tmp_path, {**LOOPBACK, "KUMA_API_SERVER_HTTP_PORT": str(port)})
    assert busy.returncode == 2, busy.stderr
    assert f"configuration error: apiServer.http.port: cannot listen on 127.0.0.1:{port}" in (
        busy.stderr
    )
    assert "listening" not in busy.stderr
    binary = tmp_path / "kuma-cp.conf.yml"
    binary.write_bytes(bytes(range(256)) * 4)
    result = run_cp(tmp_path, LOOPBACK, "-c", str(binary))
    assert result.returncode == 2, result.stderr
    assert "not a text (UTF-8) file" in result.stderr
    assert "Traceback" not in result.stderr


def test_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kuma.cp.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == f"kuma-cp {kuma.__version__}"


def test_sigterm_stops_it_while_a_big_file_is_parsed(tmp_path: Path) -> None:
    """Issue 17, defect 6: SIGTERM stops kuma-cp within seconds whatever it does; here it is
    parsing a 6 MB file (tens of seconds of work), which used to delay the stop until done."""
    folder = tmp_path / "resources"
    env = {**directory_env(folder), "KUMA_STORE_DIRECTORY_MAX_FILE_BYTES": str(64 << 20)}
    cp = kuma_cp(None, env=env)
    try:
        cp.wait_for_line("kuma-cp is ready")
        inbounds = "".join(
            f"  - port: {1 + i % 60000}\n    tags:\n      kuma.io/service: web\n"
            for i in range(120_000)
        )
        big = DATAPLANE.split("  inbound:\n")[0] + "  inbound:\n" + inbounds
        temp = tmp_path / "big.yaml"
        temp.write_text(big)
        temp.rename(folder / "big.yaml")
        cp.wait_for_line("reading a large file")
        cp.signal(signal.SIGTERM)
        assert cp.wait(timeout=15) == 0  # STOP_GRACE is 5 s
        assert "kuma-cp stopped" in cp.output()
    finally:
        cp.stop()

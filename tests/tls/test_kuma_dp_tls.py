"""kuma-dp and kumactl against a real kuma-cp over TLS: a CA that is not kuma-cp's is refused
with a clear message, no CA at all is refused before connecting, and the HTTPS API serves
kumactl with kuma-cp's certificate."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kuma.tls.certs import generate_ca_certificate
from tests.fixtures.envoy import ControlPlane

from ..cli.helpers import Kumactl

DATAPLANE = """type: Dataplane
mesh: default
name: web-01
networking:
  address: 127.0.0.1
  inbound:
  - port: 28080
    servicePort: 28081
    tags:
      kuma.io/service: web
"""


@pytest.fixture
def cp(tmp_path: Path) -> Iterator[ControlPlane]:
    plane = ControlPlane(tmp_path / "store")
    try:
        plane.start()
        yield plane
    finally:
        code = plane.stop()
    assert code in (0, None), plane.output()


def kuma_dp(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kuma.dp.cli", "run", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_kuma_dp_refuses_a_control_plane_its_ca_does_not_vouch_for(
    cp: ControlPlane, tmp_path: Path
) -> None:
    (tmp_path / "dp.yaml").write_text(DATAPLANE)
    (tmp_path / "token").write_text(cp.token("default.web-01"))
    stranger, _ = generate_ca_certificate(["localhost"])
    (tmp_path / "stranger.crt").write_bytes(stranger)
    common = ["-d", str(tmp_path / "dp.yaml"), "--dataplane-token-file", str(tmp_path / "token")]
    wrong = kuma_dp("--cp-address", f"https://127.0.0.1:{cp.dp_port}", *common,
                    "--ca-cert-file", str(tmp_path / "stranger.crt"))  # fmt: skip
    assert wrong.returncode == 1, wrong.stderr
    assert "its certificate does not verify against --ca-cert-file" in wrong.stderr
    assert "certificate verify failed" in wrong.stderr

    unverified = kuma_dp("--cp-address", f"https://127.0.0.1:{cp.dp_port}", *common)
    assert unverified.returncode == 2
    assert "refusing to connect to https://127.0.0.1" in unverified.stderr
    assert "--skip-verify" in unverified.stderr
    # Nothing was registered by either attempt.
    assert "proxy registered" not in cp.output()


def test_kumactl_over_https(cp: ControlPlane, tmp_path: Path) -> None:
    line = cp.running.wait_for_line("kuma-cp is ready")
    match = re.search(r"https_port=(\d+)", line)
    assert match, line
    url = f"https://127.0.0.1:{match.group(1)}"
    (tmp_path / "ca.crt").write_text(cp.ca)
    kumactl = Kumactl(url)
    assert "default" in kumactl.ok("get", "meshes", "--ca-cert-file", str(tmp_path / "ca.crt"))
    refused = kumactl("get", "meshes")  # the system's CAs do not know kuma-cp's certificate
    assert refused.code == 1
    assert "CERTIFICATE_VERIFY_FAILED" in refused.err

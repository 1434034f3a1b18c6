"""A generated bootstrap is one the real Envoy accepts (``envoy --mode validate``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest

from kuma.bootstrap import GeneratorParams, decode_proxy_dataplane, generate, parse_request, to_yaml
from kuma.dp.envoy import find_envoy

from .samples import dataplane, request

pytestmark = pytest.mark.envoy


def validate(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "bootstrap.yaml"
    path.write_text(text)
    return subprocess.run(
        [find_envoy(None), "--mode", "validate", "--disable-hot-restart", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("transport", "host", "ipv4"),
    [("DELTA_GRPC", "localhost", True), ("GRPC", "10.0.0.1", True), ("DELTA_GRPC", "::1", False)],
)
def test_envoy_accepts_the_bootstrap(tmp_path: Path, transport: str, host: str, ipv4: bool) -> None:
    parsed = parse_request(orjson.dumps(request(dataplane(admin={"port": 19901}))))
    proxy = decode_proxy_dataplane(parsed.dataplane_resource)
    params = GeneratorParams(xds_transport=transport)
    text = to_yaml(generate(proxy, parsed, params, xds_host=host, xds_port=5678, ipv4=ipv4))
    result = validate(tmp_path, text)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("' OK")


def test_envoy_rejects_a_broken_one(tmp_path: Path) -> None:
    # The check above can fail: a misspelt field is refused.
    result = validate(tmp_path, "admin: {adress: {}}\n")
    assert result.returncode != 0

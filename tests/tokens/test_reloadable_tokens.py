"""Real kuma-cp, kuma-dp and Envoy with ``dpServer.authn.enableReloadableTokens``: Envoy reads
the token from kuma-dp's token file on every ADS connection (Google gRPC, file-based call
credentials), so when the token on disk is replaced before the old one expires, the stream that
kuma-cp closes at the expiry comes back at once with the new token, without restarting the
proxy. Without the setting the same proxy would reconnect with the expired token from its
bootstrap and be refused (tests/tokens/test_envoy_live_streams.py)."""

from __future__ import annotations

import http.client
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kuma.processes import ManagedProcess
from tests.fixtures.envoy import (
    ControlPlane,
    HttpService,
    eventually,
    free_ports,
    get_ok,
    http_services,
    running,
    write_atomically,
)

__all__ = ["http_services"]

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

#: Long enough for kuma-dp and Envoy to start and be served on a busy machine.
SHORT = 20

DATAPLANE = """type: Dataplane
mesh: default
name: web-1
networking:
  address: 127.0.0.1
  admin:
    port: {admin}
  inbound:
  - port: {inbound}
    servicePort: {app}
    tags:
      kuma.io/service: web
"""


@pytest.fixture
def cp(tmp_path: Path) -> Iterator[ControlPlane]:
    reloading = {"KUMA_DP_SERVER_AUTHN_ENABLE_RELOADABLE_TOKENS": "true"}
    yield from running(ControlPlane(tmp_path / "store", reloading))


def subscriptions(cp: ControlPlane) -> list[dict[str, Any]]:
    connection = http.client.HTTPConnection("127.0.0.1", cp.api_port, timeout=5)
    try:
        connection.request("GET", "/meshes/default/dataplanes+insights/web-1")
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status != 200:
        return []
    found: list[dict[str, Any]] = json.loads(body)["dataplaneInsight"].get("subscriptions", [])
    return found


def online_after(cp: ControlPlane, count: int) -> Callable[[], bool]:
    """More than ``count`` subscriptions, the newest one connected."""

    def check() -> bool:
        found = subscriptions(cp)
        return len(found) > count and "disconnectTime" not in found[-1]

    return check


def test_a_token_replaced_on_disk_is_used_when_the_old_one_expires(
    cp: ControlPlane, tmp_path: Path, http_services: Callable[[str], HttpService]
) -> None:
    app = http_services("web")
    admin, inbound = free_ports(2)
    (tmp_path / "dp.yaml").write_text(DATAPLANE.format(admin=admin, inbound=inbound, app=app.port))
    token = tmp_path / "token"
    token.write_text(cp.token("default.web-1", validFor=f"{SHORT}s"))
    token.chmod(0o600)
    (tmp_path / "ca.crt").write_text(cp.ca)
    config_dir = tmp_path / "dp"
    config_dir.mkdir()
    dp = ManagedProcess(
        [sys.executable, "-m", "kuma.dp.cli", "run", "--cp-address",
         f"https://127.0.0.1:{cp.dp_port}", "-d", str(tmp_path / "dp.yaml"),
         "--dataplane-token-file", str(token), "--ca-cert-file", str(tmp_path / "ca.crt"),
         "--config-dir", str(config_dir), "--concurrency", "1", "--drain-time", "1s"]
    )  # fmt: skip
    try:
        assert get_ok(inbound) == "web"  # Envoy was served over Google gRPC with the file's token
        bootstrap = next(config_dir.rglob("bootstrap.yaml")).read_text()
        assert "file_based_metadata" in bootstrap
        assert token.read_text() not in bootstrap  # the token is read from the file, not kept
        eventually(online_after(cp, 0), "an online subscription")
        before = len(subscriptions(cp))

        write_atomically(token, cp.token("default.web-1"))  # rotated on disk, 1 h
        eventually(
            lambda: "closing the ADS stream of default.web-1: token expired" in cp.output(),
            "kuma-cp closes the stream at the old token's expiry",
            timeout=SHORT + 30,
        )
        eventually(online_after(cp, before), "Envoy reconnects with the new token")
        assert "refusing the ADS stream of default.web-1" not in cp.output()
        assert get_ok(inbound) == "web"
    finally:
        code = dp.stop()
    assert code in (0, None), dp.output()

"""``apiServer.gui.enabled``: kuma-cp serves /gui by default and not when it is off; the
served-config endpoint is part of the REST API either way."""

from __future__ import annotations

import re

import pytest

from tests.fixtures.envoy import http_get
from tests.fixtures.processes import kuma_cp

ENV = {
    "KUMA_STORE_TYPE": "memory",
    "KUMA_DP_SERVER_INTERFACE": "127.0.0.1",
    "KUMA_DP_SERVER_PORT": "0",
    "KUMA_API_SERVER_HTTP_PORT": "0",
}


@pytest.mark.parametrize("enabled", [True, False])
def test_gui_on_and_off(enabled: bool) -> None:
    env = {**ENV, "KUMA_API_SERVER_GUI_ENABLED": "true" if enabled else "false"}
    cp = kuma_cp(None, env=env)
    try:
        line = cp.wait_for_line("kuma-cp is ready")
        match = re.search(r"api_port=(\d+)", line)
        assert match, line
        port = int(match.group(1))
        status, body = http_get(port, "/gui/")
        if enabled:
            assert status == 200
            assert "<title>Kuma control plane</title>" in body
        else:
            assert status == 404
            assert "no such path: /gui/" in body
        status, body = http_get(port, "/meshes/default/dataplanes/nope/_config")
        assert status == 404
        assert "Could not retrieve a proxy config" in body
    finally:
        assert cp.stop() == 0, cp.output()

"""``kuma-dp run`` end to end with a stand-in Envoy and a stand-in control plane: the request
it sends, where the bootstrap goes, Envoy's output and exit status, the temporary files."""

from __future__ import annotations

import base64
import re
import stat
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from aiohttp import web

pytestmark = pytest.mark.anyio

DATAPLANE = """\
type: Dataplane
mesh: default
name: web-01
networking:
  address: 127.0.0.1
  admin: {port: 19999}
  inbound:
  - port: 18080
    servicePort: 8080
    tags: {kuma.io/service: web}
"""
BOOTSTRAP = "admin:\n  address:\n    socketAddress: {address: 127.0.0.1, portValue: 19999}\n"
# Prints its arguments and the bootstrap it was given, then exits with 3.
FAKE_ENVOY = """\
#!/bin/sh
if [ "$1" = "--version" ]; then
  echo "envoy  version: 0123abc/1.40.0/Clean/RELEASE/BoringSSL"
  exit 0
fi
echo "args: $*"
cat "$2"
exit 3
"""


@asynccontextmanager
async def control_plane() -> AsyncIterator[tuple[int, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    async def bootstrap(request: web.Request) -> web.Response:
        received.append(orjson.loads(await request.read()))
        body = {"bootstrap": base64.b64encode(BOOTSTRAP.encode()).decode()}
        return web.json_response({**body, "kumaSidecarConfiguration": {}})

    app = web.Application()
    app.router.add_post("/bootstrap", bootstrap)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield port, received
    finally:
        await runner.cleanup()


def fake_envoy(tmp_path: Path) -> Path:
    path = tmp_path / "envoy"
    path.write_text(FAKE_ENVOY)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


async def kuma_dp(tmp_path: Path, port: int, *extra: str) -> tuple[int, str, str]:
    dataplane = tmp_path / "dp.yaml"
    dataplane.write_text(DATAPLANE)
    argv = [sys.executable, "-m", "kuma.dp.cli", "run", "--cp-address",
            f"http://127.0.0.1:{port}", "-d", str(dataplane), "--binary-path",
            str(fake_envoy(tmp_path)), *extra]  # fmt: skip
    with anyio.fail_after(30):
        result = await anyio.run_process(argv, check=False)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


async def test_exits_with_envoys_status_and_cleans_up(tmp_path: Path) -> None:
    async with control_plane() as (port, received):
        code, out, err = await kuma_dp(tmp_path, port, "--concurrency", "2")
    assert code == 3, err
    (request,) = received
    assert (request["mesh"], request["name"], request["proxyType"]) == (
        "default",
        "web-01",
        "dataplane",
    )
    assert orjson.loads(request["dataplaneResource"])["networking"]["admin"] == {"port": 19999}
    assert request["version"]["envoy"]["version"] == "1.40.0"
    # Envoy got the bootstrap in a temporary config dir, with Kuma's arguments ...
    match = re.search(r"^\[envoy\] args: --config-path (\S+/bootstrap\.yaml) (.*)$", out, re.M)
    assert match, out
    assert match.group(2).split() == [
        "--drain-time-s", "30", "--drain-strategy", "immediate", "--disable-hot-restart",
        "--log-level", "info", "--concurrency", "2",
    ]  # fmt: skip
    # ... every line of its output prefixed, the bootstrap as received ...
    assert "[envoy] admin:\n[envoy]   address:\n" in out
    # ... the metrics hijacker's socket was announced in that dir ...
    socket_path = Path(request["metricsResources"]["socketPath"])
    assert socket_path == Path(match.group(1)).parent / "kuma-mh-web-01-default.sock"
    assert "metrics hijacker listening on unix://" + str(socket_path) in err
    # ... as was the access-log pipe (MeshAccessLog's Tcp backend), removed at exit ...
    pipe = Path(request["accessLogSocketPath"])
    assert pipe == Path(match.group(1)).parent / "kuma-al-web-01-default.sock"
    assert "access log streamer reading " + str(pipe) in err
    # ... and the temporary dir is gone once kuma-dp is.
    assert not Path(match.group(1)).parent.exists()
    assert "Envoy exited with status 3" in err


async def test_a_given_config_dir_keeps_the_bootstrap(tmp_path: Path) -> None:
    config = tmp_path / "config"
    async with control_plane() as (port, _):
        code, _, err = await kuma_dp(tmp_path, port, "--config-dir", str(config))
    assert code == 3, err
    assert (config / "bootstrap.yaml").read_text() == BOOTSTRAP


async def test_a_refused_bootstrap_exits_1(tmp_path: Path) -> None:
    async def refuse(request: web.Request) -> web.Response:
        document = {
            "detail": "Resource is not valid",
            "causes": [{"field": "mesh", "message": 'mesh "default" does not exist'}],
        }
        return web.json_response(document, status=422)

    app = web.Application()
    app.router.add_post("/bootstrap", refuse)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        code, out, err = await kuma_dp(tmp_path, runner.addresses[0][1])
    finally:
        await runner.cleanup()
    assert code == 1
    assert 'mesh: mesh "default" does not exist' in err
    assert "[envoy]" not in out


async def test_the_readiness_reporter_port_is_announced(tmp_path: Path) -> None:
    """By default kuma-dp reports readiness on a free port and tells the control plane which;
    --readiness-port 0 (Kuma's "off") sends none."""
    async with control_plane() as (port, received):
        code, _, first_err = await kuma_dp(tmp_path, port)
        assert code == 3, first_err
        code, _, err = await kuma_dp(tmp_path, port, "--readiness-port", "0")
        assert code == 3, err
    announced, off = received
    assert 0 < announced["readinessPort"] < 65536
    assert f"readiness reporter listening on 127.0.0.1:{announced['readinessPort']}" in first_err
    assert "readinessPort" not in off
    assert "readiness reporter" not in err

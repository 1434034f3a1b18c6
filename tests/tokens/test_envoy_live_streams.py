"""Real kuma-cp, real Envoys: a live ADS stream is closed the moment its token is revoked or
expires (Kuma leaves it open, kumahq/kuma#3379); Envoy keeps serving with the configuration it
holds, its reconnects are refused with the reason, and no secret reaches kuma-cp's log."""

from __future__ import annotations

import base64
import http.client
import os
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest

from kuma.resources import GlobalSecret, Secret, decode
from tests.fixtures.envoy import (
    ControlPlane,
    EnvoyFactory,
    HttpService,
    control_plane,
    dataplane_yaml,
    envoy_factory,
    eventually,
    free_ports,
    get_ok,
    http_services,
)
from tests.metrics.scrape import Scrape

__all__ = ["control_plane", "envoy_factory", "http_services"]

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

#: Long enough for Envoy to be served first on a busy machine; the test waits it out.
SHORT = 20


def put_secret(folder: Path, name: str, text: str) -> None:
    """A secret file as an operator should write one: mode 0600 from the start."""
    temporary = folder.parent / f"{name}.tmp"
    temporary.touch(mode=0o600)
    temporary.write_text(text)
    os.replace(temporary, folder / f"{name}.yaml")


def logged(cp: ControlPlane, line: str) -> Callable[[], bool]:
    return lambda: line in cp.output()


def test_revoked_and_expired_tokens_close_live_streams_and_envoy_keeps_serving(
    control_plane: ControlPlane,
    envoy_factory: EnvoyFactory,
    http_services: Callable[[str], HttpService],
) -> None:
    cp = control_plane
    apps = {name: http_services(name) for name in ("web-1", "web-2")}
    ports = dict(zip(apps, free_ports(2), strict=True))
    for name, app in apps.items():
        cp.put(name, dataplane_yaml(name, inbounds=[(ports[name], app.port, name)]))
    short = cp.token("default.web-2", validFor=f"{SHORT}s")
    long = cp.token("default.web-1")
    envoy_factory("default.web-2", "web-2", cp.dp_port, token=short, ca=cp.ca)
    envoy_factory("default.web-1", "web-1", cp.dp_port, token=long, ca=cp.ca)
    for name in apps:
        assert get_ok(ports[name]) == name  # served through its inbound listener

    jti = jwt.decode(long, options={"verify_signature": False})["jti"]
    put_secret(
        cp.folder,
        "revocations",
        "type: Secret\nmesh: default\nname: dataplane-token-revocations-default\n"
        f"data: {base64.b64encode(jti.encode()).decode()}\n",
    )
    eventually(logged(cp, "closing the ADS stream of default.web-1: token revoked"), "closed")
    eventually(logged(cp, "refusing the ADS stream of default.web-1: revoked"), "refused")
    eventually(
        logged(cp, "closing the ADS stream of default.web-2: token expired"),
        "expiry closes the stream",
        timeout=SHORT + 30,
    )
    eventually(logged(cp, "refusing the ADS stream of default.web-2: expired"), "refused")
    # Both Envoys keep the configuration they hold.
    for name in apps:
        assert get_ok(ports[name]) == name

    status, body = api_get(cp, "/metrics")
    assert status == 200
    scrape = Scrape(body)
    assert scrape.value("kuma_xds_streams_deauthenticated_total", reason="revoked") == 1
    assert scrape.value("kuma_xds_streams_deauthenticated_total", reason="expired") == 1
    assert (scrape.value("kuma_xds_streams_refused_total", reason="revoked") or 0) >= 1

    # No secret value in the log: neither token, nor the signing key, nor the revocation list.
    output = cp.output()
    secrets = [short, long]
    for path in cp.folder.glob("*.yaml"):
        for resource in decode(path.read_text()):
            if isinstance(resource, Secret | GlobalSecret):
                secrets.append(resource.data)
                assert path.stat().st_mode & 0o777 == 0o600, path
    assert len(secrets) >= 5  # the tokens, the mesh key, the zone key, the certificate, ...
    leaked = [s[:12] for s in secrets if s and s in output]
    assert not leaked, leaked


def api_get(cp: ControlPlane, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", cp.api_port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()

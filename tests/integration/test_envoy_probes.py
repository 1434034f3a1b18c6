"""Virtual probes through a real Envoy configured by a real kuma-cp: a GET on the probe port
reaches the application behind an inbound with the path rewritten, a probe of a port no
inbound serves is redirected there, and anything but GET is not a probe."""

from __future__ import annotations

import http.client
from collections.abc import Callable

import pytest
import yaml

from tests.fixtures.envoy import (
    ControlPlane,
    EnvoyFactory,
    HttpService,
    eventually,
    free_ports,
)

pytestmark = pytest.mark.envoy


def _request(port: int, path: str, method: str = "GET") -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request(method, path, headers={"Connection": "close"})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_virtual_probes_reach_the_application(
    control_plane: ControlPlane,
    envoy_factory: EnvoyFactory,
    http_services: Callable[[str], HttpService],
) -> None:
    app = http_services("web-app")
    inbound, probe_port, elsewhere = free_ports(3)
    document = {
        "type": "Dataplane",
        "mesh": "default",
        "name": "web-probed",
        "networking": {
            "address": "127.0.0.1",
            "inbound": [
                {
                    "port": inbound,
                    "servicePort": app.port,
                    "tags": {"kuma.io/service": "web", "kuma.io/protocol": "http"},
                }
            ],
        },
        "probes": {
            "port": probe_port,
            "endpoints": [
                {"inboundPort": app.port, "inboundPath": "/healthz", "path": "/app/healthz"},
                {"inboundPort": elsewhere, "inboundPath": "/ready", "path": "/other/ready"},
            ],
        },
    }
    control_plane.put("web-probed", yaml.safe_dump(document))
    token = control_plane.token("default.web-probed")
    envoy = envoy_factory(
        "default.web-probed", "web", control_plane.dp_port, token=token, ca=control_plane.ca
    )
    envoy.wait_live()
    envoy.wait_listener("probe:listener")

    def probed() -> bool:
        return _request(probe_port, "/app/healthz?verbose=1").status == 200

    eventually(probed, "a 200 from the application through the probe listener")
    # The application saw the inbound path, not the probe's (Envoy keeps the query).
    assert app.paths
    assert set(app.paths) == {"/healthz?verbose=1"}

    redirect = _request(probe_port, "/other/ready")
    assert redirect.status == 301
    location = redirect.getheader("location") or ""
    assert location.endswith(f":{elsewhere}/ready"), location

    hits = app.hits
    assert _request(probe_port, "/app/healthz", method="POST").status == 404
    assert _request(probe_port, "/unknown").status == 404
    assert app.hits == hits

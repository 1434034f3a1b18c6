"""Readiness through kuma-dp, as users run it: the proxy's public ``/ready`` (the
``kuma:envoy:admin`` listener on the Dataplane's address) is answered by kuma-dp's readiness
reporter through the ``kuma:readiness`` cluster: READY once Envoy is live, TERMINATING as soon
as kuma-dp starts draining, while Envoy still serves."""

from __future__ import annotations

import http.client
import signal

import pytest

from tests.fixtures.envoy import HttpService, eventually, free_ports

from .test_kuma_dp import Cluster, cluster

__all__ = ["cluster"]

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

#: A second loopback address: Envoy's own admin API holds 127.0.0.1:<admin port>, so the
#: public admin listener needs another address (as on a host with a real interface).
ADDRESS = "127.0.0.2"


def _ready(port: int) -> tuple[int, str, str]:
    connection = http.client.HTTPConnection(ADDRESS, port, timeout=5)
    try:
        connection.request("GET", "/ready", headers={"Connection": "close"})
        response = connection.getresponse()
        body = response.read().decode()
        return response.status, body, response.getheader("x-powered-by") or ""
    finally:
        connection.close()


def test_ready_is_kuma_dps_and_turns_terminating_when_the_drain_starts(cluster: Cluster) -> None:
    cluster.start_cp()
    inbound, admin = free_ports(2)
    app = HttpService("web")
    cluster.services.append(app)
    ports = {"inbound": inbound, "app": app.port, "admin": admin}
    dp = cluster.kuma_dp("web-01", "web", ports, address=ADDRESS, drain_time="12s")

    def ready() -> bool:
        return _ready(admin) == (200, "READY", "kuma-dp")

    eventually(ready, f"READY from kuma-dp on {ADDRESS}:{admin}/ready", timeout=30)

    dp.signal(signal.SIGTERM)

    def terminating() -> bool:
        return _ready(admin) == (503, "TERMINATING", "kuma-dp")

    # Within the 12 s drain, Envoy still answers on its listeners: the load balancer learns
    # first, before anything stops.
    eventually(terminating, "TERMINATING while Envoy drains", timeout=8)
    assert dp.proc.poll() is None, dp.output()
    dp.signal(signal.SIGTERM)  # a second signal cuts the drain short
    dp.wait(timeout=20)

"""A real Envoy as kuma-cp sees it: its subscription counted (a NACK included) in the REST
API's ``dataplanes+insights`` and in ``/metrics``, online while connected, offline once the
Envoy is stopped."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kuma.insights import is_online
from tests.fixtures.envoy import (
    ControlPlane,
    EnvoyFactory,
    dataplane_yaml,
    eventually,
    free_ports,
    http_get,
)
from tests.metrics.scrape import Scrape

pytestmark = pytest.mark.envoy


class ApiControlPlane(ControlPlane):
    """The fixture's kuma-cp with its REST API on a free port, learned from the ready line."""

    def get(self, path: str) -> str:
        status, body = http_get(self.api_port, path)
        assert status == 200, body
        return body

    def insight(self, name: str) -> dict[str, Any]:
        overview = json.loads(self.get(f"/meshes/default/dataplanes+insights/{name}"))
        insight: dict[str, Any] = overview["dataplaneInsight"]
        return insight

    def metrics(self) -> Scrape:
        return Scrape(self.get("/metrics"))


@pytest.fixture
def cp(tmp_path: Path) -> Iterator[ApiControlPlane]:
    plane = ApiControlPlane(tmp_path / "store")
    try:
        plane.start()
        yield plane
    finally:
        code = plane.stop()
    assert code in (0, None), plane.output()
    assert "Traceback" not in plane.output(), plane.output()


def test_an_envoy_is_counted_nack_included_and_goes_offline(
    cp: ApiControlPlane, envoy_factory: EnvoyFactory
) -> None:
    # Another socket holds the inbound port: Envoy cannot bind it and NACKs the listeners.
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        taken = int(squatter.getsockname()[1])
        (service_port,) = free_ports(1)
        cp.put("web-1", dataplane_yaml("web-1", inbounds=[(taken, service_port, "web")]))
        envoy = envoy_factory(
            "default.web-1", "web", cp.dp_port, token=cp.token("default.web-1"), ca=cp.ca
        )

        def counted() -> dict[str, Any] | None:
            insight = cp.insight("web-1")
            subscriptions = insight.get("subscriptions", [])
            if subscriptions and "responsesRejected" in subscriptions[-1]["status"]["lds"]:
                return insight
            return None

        insight = eventually(counted, "the NACK in web-1's insight")
        assert is_online(insight)
        [subscription] = insight["subscriptions"]
        status = subscription["status"]
        assert status["lds"]["responsesRejected"] == "1"
        assert int(status["cds"]["responsesSent"]) >= 1
        assert int(status["total"]["responsesSent"]) >= 2
        assert subscription["version"]["envoy"]["version"].count(".") == 2
        assert subscription["version"]["envoy"]["build"]  # <sha>/<version>/... from the node

        scrape = cp.metrics()
        assert scrape.value("kuma_xds_streams_active", protocol="delta") == 1
        assert (scrape.value("kuma_xds_responses_nacked_total", type="lds") or 0) >= 1
        assert (scrape.value("kuma_xds_responses_acked_total", type="cds") or 0) >= 1

    assert envoy.stop() == 0

    def offline() -> dict[str, Any] | None:
        insight = cp.insight("web-1")
        return None if is_online(insight) else insight

    insight = eventually(offline, "web-1 to go offline")
    assert "disconnectTime" in insight["subscriptions"][-1]
    assert cp.metrics().value("kuma_xds_streams_active", protocol="delta") == 0

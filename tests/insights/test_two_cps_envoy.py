"""Two kuma-cp processes on one etcd: an Envoy connected to one is online, then offline, in the
other's REST API (DataplaneInsights shared through etcd, plugins/kuma_etcd_store/insights.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from kuma.insights import is_online
from kuma.resources import decode_one
from tests.fixtures.envoy import EnvoyFactory, dataplane_yaml, eventually, free_ports
from tests.fixtures.etcd import EtcdServer
from tests.store.harness_etcd import etcd_store

from .test_insights_envoy import ApiControlPlane

pytestmark = [pytest.mark.envoy, pytest.mark.etcd]


class EtcdControlPlane(ApiControlPlane):
    def __init__(self, folder: Path, server: EtcdServer, prefix: str) -> None:
        super().__init__(folder)
        self.server = server
        self.prefix = prefix

    def env(self) -> dict[str, str]:
        return {
            **super().env(),
            "KUMA_STORE_TYPE": "etcd",
            "KUMA_STORE_ETCD_ENDPOINTS": self.server.endpoint,
            "KUMA_STORE_ETCD_PREFIX": self.prefix,
            "KUMA_XDS_SERVER_DATAPLANE_STATUS_FLUSH_INTERVAL": "1s",
        }


@pytest.fixture
def cps(
    tmp_path: Path, etcd_server: EtcdServer, etcd_prefix: str
) -> Iterator[tuple[EtcdControlPlane, EtcdControlPlane]]:
    planes = [EtcdControlPlane(tmp_path / f"cp-{i}", etcd_server, etcd_prefix) for i in (1, 2)]
    try:
        for plane in planes:
            plane.start()
        yield planes[0], planes[1]
    finally:
        codes = [plane.stop() for plane in planes]
    for plane, code in zip(planes, codes, strict=True):
        assert code in (0, None), plane.output()
        assert "Traceback" not in plane.output(), plane.output()


def test_an_envoy_on_one_instance_is_online_then_offline_on_the_other(
    cps: tuple[EtcdControlPlane, EtcdControlPlane],
    etcd_server: EtcdServer,
    etcd_prefix: str,
    envoy_factory: EnvoyFactory,
) -> None:
    a, b = cps
    (inbound, service) = free_ports(2)
    resource = decode_one(dataplane_yaml("web-1", inbounds=[(inbound, service, "web")]))

    async def create() -> None:
        async with etcd_store(etcd_server.endpoint, etcd_prefix) as store:
            await store.create(resource)

    anyio.run(create)
    # One certificate for both (generated once, kept in etcd), and a token from one instance
    # accepted by the other: both read the same signing key from the store.
    assert a.ca == b.ca
    envoy = envoy_factory(
        "default.web-1", "web", a.dp_port, token=b.token("default.web-1"), ca=b.ca
    )

    def online_on_b() -> dict[str, Any] | None:
        insight = b.insight("web-1")
        return insight if is_online(insight) else None

    insight = eventually(online_on_b, "web-1 online in the other instance's API")
    [subscription] = insight["subscriptions"]
    assert int(subscription["status"]["total"]["responsesSent"]) >= 1
    # Served by A alone: B holds no stream.
    assert b.metrics().value("kuma_xds_streams_active", protocol="delta") in (0, None)
    assert envoy.stop() == 0

    def offline_on_b() -> dict[str, Any] | None:
        insight = b.insight("web-1")
        return None if is_online(insight) else insight

    insight = eventually(offline_on_b, "web-1 offline in the other instance's API")
    assert "disconnectTime" in insight["subscriptions"][-1]

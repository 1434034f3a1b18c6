from __future__ import annotations

import pytest
from envoy.config.core.v3 import base_pb2

from kuma.xds.proxy_metadata import NO_METADATA, ProxyMetadata, proxy_metadata


def _node(**fields: object) -> base_pb2.Node:
    node = base_pb2.Node(id="default.web-01")
    node.metadata.update(fields)
    return node


def test_dns_port_from_kuma_dps_string() -> None:
    assert proxy_metadata(_node(**{"dataplane.dns.port": "15053"})) == ProxyMetadata(15053)
    assert proxy_metadata(_node(**{"dataplane.dns.port": 16053})) == ProxyMetadata(16053)


def test_absent_metadata_means_no_dns() -> None:
    assert proxy_metadata(base_pb2.Node(id="x")) is NO_METADATA
    assert proxy_metadata(_node(other="1")) is NO_METADATA
    assert proxy_metadata(None) is NO_METADATA


@pytest.mark.parametrize("value", ["dns", "0", "70000", 1.5, "-1"])
def test_a_bad_port_is_ignored(value: object, caplog: pytest.LogCaptureFixture) -> None:
    assert proxy_metadata(_node(**{"dataplane.dns.port": value})) is NO_METADATA
    assert "is not a port" in caplog.text

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


def test_readiness_port_from_kuma_dps_string() -> None:
    node = _node(**{"dataplane.readinessReporter.port": "41234"})
    assert proxy_metadata(node) == ProxyMetadata(readiness_port=41234)
    both = _node(**{"dataplane.dns.port": "15053", "dataplane.readinessReporter.port": "9902"})
    assert proxy_metadata(both) == ProxyMetadata(dns_port=15053, readiness_port=9902)


def test_a_bad_readiness_port_leaves_the_dns_port(caplog: pytest.LogCaptureFixture) -> None:
    node = _node(**{"dataplane.dns.port": "15053", "dataplane.readinessReporter.port": "x"})
    assert proxy_metadata(node) == ProxyMetadata(dns_port=15053)
    assert "readiness from Envoy" in caplog.text


def test_the_access_log_pipe_from_kuma_dp() -> None:
    node = _node(accessLogSocketPath="/run/dp/kuma-al-web-01-default.sock")
    expected = ProxyMetadata(access_log_socket="/run/dp/kuma-al-web-01-default.sock")
    assert proxy_metadata(node) == expected

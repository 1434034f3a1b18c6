"""kumactl generate: dataplane and zone tokens from kuma-cp or signed offline, signing keys."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from kuma.tokens.claims import dataplane_identity, header_kid, verify, zone_identity

from .helpers import Kumactl, running_cp


@pytest.fixture(scope="module")
def kumactl() -> Iterator[Kumactl]:
    with running_cp() as cp:
        yield Kumactl(cp.url)


def claims(token: str) -> dict[str, object]:
    decoded: dict[str, object] = jwt.decode(token, options={"verify_signature": False})
    return decoded


def test_tokens_from_the_control_plane(kumactl: Kumactl) -> None:
    token = kumactl.ok(
        "generate", "dataplane-token", "--name", "web-01", "--tag", "kuma.io/service=web,api",
        "--proxy-type", "dataplane", "--valid-for", "24h",
    )  # fmt: skip
    assert header_kid(token) == "1"
    found = claims(token)
    assert (found["Name"], found["Mesh"], found["Tags"], found["Type"]) == (
        "web-01", "default", {"kuma.io/service": ["api", "web"]}, "dataplane",
    )  # fmt: skip
    assert found["exp"] == found["iat"] + 24 * 3600  # type: ignore[operator]
    zone = kumactl.ok("generate", "zone-token", "--zone", "east", "--valid-for", "1h")
    assert zone_identity(claims(zone)).scope == ("ingress", "egress")
    missing = kumactl("generate", "dataplane-token", "--mesh", "nope")
    assert missing.code == 1
    assert "mesh of name nope is not found" in missing.err
    assert kumactl("generate", "zone-token", "--zone", "east").err == (
        "Error: --valid-for is required (e.g. 24h, 720h)\n"
    )


def test_offline_signing_with_a_generated_key(kumactl: Kumactl, tmp_path: Path) -> None:
    encoded = kumactl.ok("generate", "signing-key")
    pem = base64.b64decode(encoded)
    assert pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    key_file = tmp_path / "key"
    key_file.write_text(encoded)  # base64 PEM, as printed, is accepted as well as PEM
    token = kumactl.ok(
        "generate", "dataplane-token", "--name", "web-01", "--mesh", "demo",
        "--signing-key-path", str(key_file), "--kid", "7", "--api-server", "http://127.0.0.1:1",
    )  # fmt: skip
    verified = verify(token, pem, header_kid(token))
    assert verified.kid == "7"
    assert dataplane_identity(verified.claims).mesh == "demo"
    assert kumactl.ok("generate", "signing-key", "--format", "pem").startswith("-----BEGIN")
    half = kumactl("generate", "dataplane-token", "--kid", "7")
    assert half.err == "Error: --signing-key-path and --kid go together (offline signing)\n"
    key_file.write_text("garbage")
    bad = kumactl("generate", "zone-token", "--zone", "e", "--valid-for", "1h",
                  "--signing-key-path", str(key_file), "--kid", "1")  # fmt: skip
    assert "neither PEM nor base64 PEM" in bad.err

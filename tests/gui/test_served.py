"""The served configuration: rendered from the ConfigSource, private keys never shown."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from kuma.inspect import REDACTED, served_config
from kuma.inspect.served import redact
from kuma.xds.proxy_metadata import ProxyMetadata
from kuma.xds.snapshot import VersionedResource, versioned
from kuma.xds.types import SECRET

pytestmark = pytest.mark.anyio


class OneSecret:
    """A ConfigSource (and its ProxyWatch) that serves one SDS secret."""

    def __init__(self, resource: VersionedResource) -> None:
        self.resource = resource
        self.watched: list[str] = []
        self.node_id = ""
        self.known = True

    @asynccontextmanager
    async def watch_proxy(
        self, node_id: str, metadata: ProxyMetadata | None = None
    ) -> AsyncIterator[OneSecret]:
        self.watched.append(node_id)
        yield self

    def resources(self, type_url: str) -> Mapping[str, VersionedResource]:
        return {self.resource.name: self.resource} if type_url == SECRET else {}

    def take_changes(self) -> dict[str, set[str]]:
        return {}

    async def wait_for_changes(self) -> None:
        raise AssertionError("not used")

    def poke(self) -> None:
        raise AssertionError("not used")


def self_signed(expires: datetime) -> tuple[bytes, bytes]:
    """A certificate (PEM) naming a SPIFFE-style URI, and its private key (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "default")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(expires - timedelta(days=1))
        .not_valid_after(expires)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier("spiffe://default/web")]),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


async def test_private_keys_are_redacted_and_certificates_summarised() -> None:
    expires = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    cert_pem, key_pem = self_signed(expires)
    secret = secret_pb2.Secret(name="identity")
    secret.tls_certificate.private_key.inline_bytes = key_pem
    secret.tls_certificate.certificate_chain.inline_bytes = cert_pem
    resource = versioned(SECRET, "identity", secret)
    source = OneSecret(resource)
    served = await served_config(source, "default", "web-01")
    assert source.watched == ["default.web-01"]
    rendered = served["xds"][SECRET]["identity"]
    assert rendered["tlsCertificate"]["privateKey"] == REDACTED
    assert base64.b64decode(rendered["tlsCertificate"]["certificateChain"]["inlineBytes"]) == (
        cert_pem
    )
    assert served["versions"][SECRET] == {"identity": resource.version}
    assert served["certificates"] == {
        "identity": [
            {
                "role": "identity",
                "subject": "O=default",
                "uris": ["spiffe://default/web"],
                "notBefore": "2030-01-01T03:04:05+00:00",
                "notAfter": "2030-01-02T03:04:05+00:00",
            }
        ]
    }
    everything = orjson.dumps(served)
    assert b"PRIVATE KEY" not in everything
    assert base64.b64encode(key_pem)[:40] not in everything


def test_redaction_reaches_every_depth() -> None:
    document = {"a": [{"privateKey": {"inlineBytes": "eA=="}}, {"password": "x"}], "secret": 1}
    assert redact(document) == {
        "a": [{"privateKey": REDACTED}, {"password": REDACTED}],
        "secret": REDACTED,
    }

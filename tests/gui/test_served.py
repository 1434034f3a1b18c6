"""The served configuration: rendered from the ConfigSource, private keys never shown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import orjson
import pytest
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from kuma.inspect import REDACTED, served_config
from kuma.inspect.served import redact
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
    async def watch_proxy(self, node_id: str) -> AsyncIterator[OneSecret]:
        self.watched.append(node_id)
        yield self

    def resources(self, type_url: str) -> Mapping[str, VersionedResource]:
        return {self.resource.name: self.resource} if type_url == SECRET else {}

    def take_changes(self) -> dict[str, set[str]]:
        return {}

    async def wait_for_changes(self) -> None:
        raise AssertionError("not used")


async def test_private_keys_are_redacted_and_certificates_kept() -> None:
    secret = secret_pb2.Secret(name="identity")
    secret.tls_certificate.private_key.inline_string = "-----BEGIN PRIVATE KEY-----\nAAAA"
    secret.tls_certificate.certificate_chain.inline_string = "-----BEGIN CERTIFICATE-----"
    resource = versioned(SECRET, "identity", secret)
    source = OneSecret(resource)
    served = await served_config(source, "default", "web-01")
    assert source.watched == ["default.web-01"]
    rendered = served["xds"][SECRET]["identity"]
    assert rendered["tlsCertificate"]["privateKey"] == REDACTED
    assert rendered["tlsCertificate"]["certificateChain"] == {
        "inlineString": "-----BEGIN CERTIFICATE-----"
    }
    assert served["versions"][SECRET] == {"identity": resource.version}
    assert b"PRIVATE KEY" not in orjson.dumps(served)


def test_redaction_reaches_every_depth() -> None:
    document = {"a": [{"privateKey": {"inlineBytes": "eA=="}}, {"password": "x"}], "secret": 1}
    assert redact(document) == {
        "a": [{"privateKey": REDACTED}, {"password": REDACTED}],
        "secret": REDACTED,
    }

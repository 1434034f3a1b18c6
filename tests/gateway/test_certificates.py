"""A builtin gateway's TERMINATE certificates: Kuma's parsing and names (``cert.<key
type>:<scope>:<id>``), clear errors that never show the key, and the engine following the
mesh Secret a listener reads (missing: the port left out with a warning; created, changed,
deleted: only the gateway re-assembled)."""

from __future__ import annotations

import base64
import logging

import pytest
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2

from kuma.resources import decode, decode_one
from kuma.resources.model import DataSource
from kuma.store import Operation
from kuma.tls.certs import generate_ca_certificate
from kuma.xds import types
from kuma.xds.engine import Engine
from kuma.xds.gateway.certificates import CertificateError, SecretLookup, server_secret

from .helpers import BASE, events

LISTENER = "edge:HTTPS:8443"


def lookup(secrets: dict[str, bytes]) -> SecretLookup:
    return secrets.get


def pem(key_type: str = "RSA", name: str = "example.test") -> tuple[bytes, bytes]:
    return generate_ca_certificate([name], key_type)


def test_kuma_names_and_encoding() -> None:
    cert, key = pem("ECDSA")
    secret = server_secret(DataSource(secret="edge-cert"), "*", lookup({"edge-cert": key + cert}))
    assert secret.name == "cert.ecdsa:secret:edge-cert"
    chain = secret.tls_certificate.certificate_chain.inline_string
    assert chain == cert.decode() + "\n"  # Kuma writes a blank line after each certificate
    assert secret.tls_certificate.private_key.inline_string == key.decode()
    cert, key = pem("RSA")
    inline = server_secret(DataSource(inline=cert + key), "a.test", lookup({}))
    assert inline.name == "cert.rsa:inline:a.test"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (lambda c, k: c, "inline certificate: missing private key"),
        (lambda c, k: k, "inline certificate: missing server certificate"),
        (lambda c, k: c + k + k, "inline certificate: secret[2]: secret contains multiple"),
        (
            lambda c, k: c + b"-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n" + k,
            "inline certificate: secret[1]: unsupported PEM block 'FOO'",
        ),
        (lambda c, k: b"", "inline certificate is empty"),
    ],
)
def test_bad_certificates_are_clear_errors_without_the_key(content: object, message: str) -> None:
    cert, key = pem()
    assert callable(content)
    data = content(cert, key)
    with pytest.raises(CertificateError) as raised:
        server_secret(DataSource(inline=data), "*", lookup({}))
    assert str(raised.value).startswith(message)
    body = key.decode().splitlines()[1]
    assert body not in str(raised.value)


def test_a_missing_secret_names_it() -> None:
    with pytest.raises(CertificateError, match="Secret 'nope' not found"):
        server_secret(DataSource(secret="nope"), "*", lookup({}))


GATEWAY = """\
type: MeshGateway
mesh: default
name: edge
selectors: [{match: {kuma.io/service: edge}}]
conf:
  listeners:
    - {protocol: HTTP, port: 8000}
    - protocol: HTTPS
      port: 8443
      hostname: example.test
      tls: {mode: TERMINATE, certificates: [{secret: edge-cert}]}
"""


def secret_resource(cert: bytes, key: bytes) -> str:
    data = base64.b64encode(cert + key).decode()
    return f"type: Secret\nmesh: default\nname: edge-cert\ndata: {data}\n"


def test_engine_follows_the_secret_a_listener_reads(caplog: pytest.LogCaptureFixture) -> None:
    engine = Engine()
    engine.apply_now(events(decode(BASE)))
    edge = engine.subscribe("default.edge-1")
    with caplog.at_level(logging.WARNING, logger="kuma.xds.gateway"):
        engine.apply_now(events(decode(GATEWAY)))
    # No Secret yet: the HTTPS port is left out with a reason; the HTTP port is served.
    assert "edge:HTTP:8000" in edge.resources(types.LISTENER)
    assert LISTENER not in edge.resources(types.LISTENER)
    assert "Secret 'edge-cert' not found" in caplog.text
    assert LISTENER in caplog.text

    cert, key = pem()
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        engine.apply_now(events([decode_one(secret_resource(cert, key))]))
    assert engine.last_batch.proxies_assembled == 1  # the gateway only
    assert key.decode().splitlines()[1] not in caplog.text
    listener = listener_pb2.Listener.FromString(edge.resources(types.LISTENER)[LISTENER].body)
    (chain,) = listener.filter_chains
    assert list(chain.filter_chain_match.server_names) == ["example.test"]
    context = tls_pb2.DownstreamTlsContext()
    chain.transport_socket.typed_config.Unpack(context)
    sds = context.common_tls_context.tls_certificate_sds_secret_configs
    assert [c.name for c in sds] == ["cert.rsa:secret:edge-cert"]
    assert "edge:HTTPS:8443:example.test" in edge.resources(types.ROUTE)
    served = edge.resources(types.SECRET)["cert.rsa:secret:edge-cert"]
    listener_version = edge.resources(types.LISTENER)[LISTENER].version

    # A new certificate in the same Secret: the SDS Secret changes, the listener does not.
    cert2, key2 = pem()
    engine.apply_now(events([decode_one(secret_resource(cert2, key2))], Operation.UPDATE))
    assert engine.last_batch.proxies_assembled == 1
    renewed = edge.resources(types.SECRET)["cert.rsa:secret:edge-cert"]
    assert renewed.version != served.version
    message = secret_pb2.Secret.FromString(renewed.body)
    assert message.tls_certificate.certificate_chain.inline_string == cert2.decode() + "\n"
    assert edge.resources(types.LISTENER)[LISTENER].version == listener_version

    # Not a certificate any more: left out again; deleted: still out, the HTTP port served.
    engine.apply_now(events([decode_one(secret_resource(b"", key2))], Operation.UPDATE))
    assert LISTENER not in edge.resources(types.LISTENER)
    assert not edge.resources(types.SECRET)
    engine.apply_now(events([decode_one(secret_resource(cert2, key2))], Operation.UPDATE))
    assert LISTENER in edge.resources(types.LISTENER)
    engine.apply_now(events([decode_one(secret_resource(cert2, key2))], Operation.DELETE))
    assert LISTENER not in edge.resources(types.LISTENER)
    assert "edge:HTTP:8000" in edge.resources(types.LISTENER)
    # A sidecar never reads it.
    assert not engine.subscribe("default.web-1").resources(types.SECRET)

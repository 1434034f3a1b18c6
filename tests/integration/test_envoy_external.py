"""A sidecar reaches ExternalServices (local servers standing in for the outside) through a real
Envoy configured by a real kuma-cp, as Kuma does without zone egress: plain HTTP to a host name
(STRICT_DNS), followed when the ExternalService moves; HTTPS with the SNI and the CA from a mesh
Secret (the server sees the SNI, Envoy verifies the chain); and a CA that did not sign the
server's certificate fails the handshake."""

from __future__ import annotations

import base64
import datetime
import os
import ssl
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.fixtures.envoy import (
    ControlPlane,
    EnvoyFactory,
    HttpService,
    eventually,
    free_ports,
    get_ok,
    http_get,
)

pytestmark = pytest.mark.envoy


def _certificate(
    subject: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A CA (no issuer) or a serving certificate for ``subject`` (a DNS name) it signs."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256()), key


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


class Https(NamedTuple):
    service: HttpService
    #: The SNI of every handshake the server saw.
    server_names: list[str | None]
    #: The CA that signed the server's certificate (PEM).
    ca: bytes


@pytest.fixture
def https_service(tmp_path: Path) -> Iterator[Https]:
    """An HTTPS server with a certificate for ``localhost`` signed by a test CA."""
    ca = _certificate("test-ca", None)
    leaf, key = _certificate("localhost", ca)
    chain_file, key_file = tmp_path / "server.pem", tmp_path / "server.key"
    chain_file.write_bytes(_pem(leaf))
    key_file.touch(mode=0o600)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain_file, key_file)
    names: list[str | None] = []
    context.sni_callback = lambda _socket, name, _context: names.append(name)
    service = HttpService("outside-tls", tls=context)
    try:
        yield Https(service, names, _pem(ca[0]))
    finally:
        service.close()


def _external(name: str, service: str, address: str, tls: dict[str, Any] | None = None) -> str:
    networking: dict[str, Any] = {"address": address}
    if tls is not None:
        networking["tls"] = tls
    document = {
        "type": "ExternalService",
        "mesh": "default",
        "name": name,
        "networking": networking,
        "tags": {"kuma.io/service": service, "kuma.io/protocol": "http"},
    }
    return yaml.safe_dump(document, sort_keys=False)


def _put_secret(control_plane: ControlPlane, name: str, value: bytes) -> None:
    """A mesh Secret in the directory store, written 0600 (as the store wants secrets)."""
    text = yaml.safe_dump(
        {
            "type": "Secret",
            "mesh": "default",
            "name": name,
            "data": base64.b64encode(value).decode(),
        }
    )
    fd, temporary = tempfile.mkstemp(dir=control_plane.folder, prefix=".secret-")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(temporary, control_plane.path(name))


def test_a_sidecar_reaches_external_services_plain_and_tls(
    control_plane: ControlPlane,
    envoy_factory: EnvoyFactory,
    http_services: Callable[[str], HttpService],
    https_service: Https,
) -> None:
    outside, moved = http_services("outside"), http_services("outside-moved")
    secure, ca = https_service.service, https_service.ca
    other_ca = _pem(_certificate("another-ca", None)[0])
    _put_secret(control_plane, "outside-ca", ca)
    control_plane.put("es-plain", _external("plain", "outside", f"localhost:{outside.port}"))
    tls = {"enabled": True, "serverName": "localhost", "caCert": {"secret": "outside-ca"}}
    control_plane.put("es-tls", _external("tls", "secure", f"127.0.0.1:{secure.port}", tls))
    wrong = {
        "enabled": True,
        "serverName": "localhost",
        "caCert": {"inlineString": other_ca.decode()},
    }
    control_plane.put("es-wrong", _external("wrong", "wrong-ca", f"127.0.0.1:{secure.port}", wrong))

    inbound, app, to_plain, to_tls, to_wrong = free_ports(5)
    outbounds = [
        {"port": to_plain, "tags": {"kuma.io/service": "outside"}},
        {"port": to_tls, "tags": {"kuma.io/service": "secure"}},
        {"port": to_wrong, "tags": {"kuma.io/service": "wrong-ca"}},
    ]
    tags = {"kuma.io/service": "web", "kuma.io/protocol": "http"}
    networking = {
        "address": "127.0.0.1",
        "inbound": [{"port": inbound, "servicePort": app, "tags": tags}],
        "outbound": outbounds,
    }
    control_plane.put(
        "web",
        yaml.safe_dump(
            {"type": "Dataplane", "mesh": "default", "name": "web", "networking": networking}
        ),
    )
    node = "default.web"
    web = envoy_factory(
        node, "web", control_plane.dp_port, token=control_plane.token(node), ca=control_plane.ca
    )
    web.wait_live()
    for port in (to_plain, to_tls, to_wrong):
        web.wait_listener(f"outbound:127.0.0.1:{port}")

    # Plain, to a host name: a STRICT_DNS cluster holding the address itself.
    assert get_ok(to_plain) == "outside"
    clusters = web.dynamic_config()["clusters"]
    assert clusters["outside"]["type"] == "STRICT_DNS"
    assert outside.hits >= 1

    # TLS with the CA of a mesh Secret: the server saw Kuma's SNI, Envoy verified its chain.
    assert get_ok(to_tls) == "outside-tls"
    assert "localhost" in https_service.server_names
    assert web.stat("cluster.secure.ssl.handshake") >= 1

    # A CA that did not sign the server's certificate: no response from the server.
    status, _ = http_get(to_wrong)
    assert status == 503
    assert web.stat("cluster.wrong-ca.ssl.fail_verify_error") >= 1

    # The ExternalService moves: the sidecar follows.
    control_plane.put("es-plain", _external("plain", "outside", f"localhost:{moved.port}"))
    eventually(lambda: http_get(to_plain)[1] == "outside-moved" or None, "the moved server")
    assert "-----BEGIN CERTIFICATE-----" not in control_plane.output()

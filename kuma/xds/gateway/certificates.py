"""A TERMINATE listener's server certificates as SDS Secrets, as Kuma 2.7 builds them
(runtime/gateway ``filter_chain_generator.go``: ``generateCertificateSecret``,
``NewServerSecret``; ``secrets/v3/server_certificate.go``).

* A certificate DataSource holds PEM blocks: one private key (RSA or ECDSA) and at least one
  certificate, nothing else. The Secret carries them re-encoded (certificates each followed by
  a blank line, as Kuma writes them) as inline strings.
* Its name says the key type and where it came from: ``cert.<rsa|ecdsa>:secret:<Secret name>``,
  ``cert.<type>:file:<path>``, or for inline data ``cert.<type>:inline:<listener hostname>``
  (several certificates of one host differ by key type). The same Secret used by several
  listeners is one SDS resource.

Errors (:class:`CertificateError`) name the DataSource (Secret name or file, never its
content) and what is wrong; key material never reaches a message, a log line or a ``repr``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Literal

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_der_private_key
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from kuma.resources.model import DataSource
from kuma.xds.generate.external import UnresolvedSource, read_source

KeyType = Literal["rsa", "ecdsa"]
SecretLookup = Callable[[str], bytes | None]

_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)


class CertificateError(ValueError):
    """A certificate DataSource that cannot be served (the message never holds its content)."""


def describe(source: DataSource) -> str:
    """Where a DataSource comes from, for an error (its ``repr`` redacts inline data)."""
    if source.secret:
        return f"Secret {source.secret!r}"
    if source.file:
        return f"file {source.file!r}"
    return "inline certificate"


def secret_name(source: DataSource, key_type: KeyType, hostname: str) -> str:
    """Kuma's ``names.GetSecretName("cert.<type>", scope, identifier)``."""
    if source.secret:
        return f"cert.{key_type}:secret:{source.secret}"
    if source.file:
        return f"cert.{key_type}:file:{source.file}"
    return f"cert.{key_type}:inline:{hostname}"


def server_secret(source: DataSource, hostname: str, secrets: SecretLookup) -> secret_pb2.Secret:
    """The Secret serving ``source`` on a listener of ``hostname`` (CertificateError when it
    cannot be read or is not one key and some certificates)."""
    try:
        data = read_source(source, secrets)
    except UnresolvedSource as error:
        raise CertificateError(f"{error} not found") from None
    if not data:
        raise CertificateError(f"{describe(source)} is empty")
    try:
        certificates, key, key_type = _parse(data)
    except CertificateError as error:
        raise CertificateError(f"{describe(source)}: {error}") from None
    secret = secret_pb2.Secret(name=secret_name(source, key_type, hostname))
    secret.tls_certificate.certificate_chain.inline_string = "".join(
        f"{block}\n" for block in certificates
    )
    secret.tls_certificate.private_key.inline_string = key
    return secret


@lru_cache(maxsize=64)
def _parse(data: bytes) -> tuple[tuple[str, ...], str, KeyType]:
    """Kuma's ``NewServerSecret``: the certificates and the key, re-encoded. Cached by content:
    a gateway is re-assembled on every backend change, its certificates rarely change (a
    CertificateError is not cached: it is raised again)."""
    certificates: list[str] = []
    key: tuple[str, KeyType] | None = None
    for index, found in enumerate(_BLOCK.finditer(data)):
        kind = found.group(1).decode()
        body = found.group(2)
        if b":" in body:  # PEM headers: an encrypted key, which Envoy cannot use
            raise CertificateError(f"secret[{index}]: PEM block {kind!r} has headers")
        try:
            der = base64.b64decode(b"".join(body.split()), validate=True)
        except binascii.Error:
            raise CertificateError(f"secret[{index}]: PEM block {kind!r} is not base64") from None
        if kind.endswith("PRIVATE KEY"):
            if key is not None:
                raise CertificateError(f"secret[{index}]: secret contains multiple private keys")
            key = (_encode(kind, der), _key_type(index, der))
        elif kind.endswith("CERTIFICATE"):
            certificates.append(_encode(kind, der))
        else:
            raise CertificateError(f"secret[{index}]: unsupported PEM block {kind!r}")
    if not certificates:
        raise CertificateError("missing server certificate")
    if key is None:
        raise CertificateError("missing private key")
    return tuple(certificates), key[0], key[1]


def _key_type(index: int, der: bytes) -> KeyType:
    try:
        private_key = load_der_private_key(der, password=None)
    except (ValueError, TypeError):
        raise CertificateError(f"secret[{index}]: the private key cannot be parsed") from None
    if isinstance(private_key, rsa.RSAPrivateKey):
        return "rsa"
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return "ecdsa"
    raise CertificateError(f"secret[{index}]: unsupported private key type")


def _encode(kind: str, der: bytes) -> str:
    """Go's ``pem.Encode``: 64 base64 characters a line."""
    text = base64.b64encode(der).decode()
    lines = "".join(f"{text[i : i + 64]}\n" for i in range(0, len(text), 64))
    return f"-----BEGIN {kind}-----\n{lines}-----END {kind}-----\n"

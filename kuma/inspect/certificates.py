"""The certificates inside served SDS Secrets, summarised for people: whose, and until when.

Only public parts are read (the certificate chain and the trusted CAs); a Secret's private
key is never parsed or shown.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf.message import DecodeError

from kuma.xds.snapshot import VersionedResource


def _pem(source: base_pb2.DataSource) -> bytes:
    kind = source.WhichOneof("specifier")
    if kind == "inline_bytes":
        return bytes(source.inline_bytes)
    if kind == "inline_string":
        return str(source.inline_string).encode()
    return b""  # a file or an environment variable: not ours to read


def _summary(certificate: x509.Certificate, role: str) -> dict[str, Any]:
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        uris = names.value.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    return {
        "role": role,
        "subject": certificate.subject.rfc4514_string(),
        "uris": uris,
        "notBefore": certificate.not_valid_before_utc.isoformat(),
        "notAfter": certificate.not_valid_after_utc.isoformat(),
    }


def certificates(resource: VersionedResource) -> list[dict[str, Any]]:
    """The certificates of one served Secret: its own chain (``identity``) and the CAs it
    trusts (``ca``); ``[]`` for anything that holds none or does not parse."""
    secret = secret_pb2.Secret()
    try:
        secret.ParseFromString(resource.body)
    except DecodeError:
        return []
    found: list[dict[str, Any]] = []
    for role, pem in (
        ("identity", _pem(secret.tls_certificate.certificate_chain)),
        ("ca", _pem(secret.validation_context.trusted_ca)),
    ):
        if not pem:
            continue
        try:
            chain = x509.load_pem_x509_certificates(pem)
        except ValueError:
            continue
        found.extend(_summary(certificate, role) for certificate in chain)
    return found

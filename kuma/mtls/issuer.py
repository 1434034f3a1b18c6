"""Workload identities: one key and certificate per proxy, signed by the mesh's CA
(Kuma: pkg/core/ca/issuer/issuer.go).

The certificate is Kuma's: no subject, URI SANs ``spiffe://<mesh>/<service>`` for every
``kuma.io/service`` value, then ``kuma://<tag>/<value>`` for every tag value (tags and values
sorted), serial a random 128-bit number, valid from 10 s ago for the backend's
``dpCert.rotation.expiration``, digitalSignature/keyEncipherment/keyAgreement, server and
client auth.

The key is ECDSA P-256 by default (Kuma generates RSA-2048 keys, ~250 times the CPU per proxy);
``key_type="RSA"`` reproduces Kuma's choice (the benchmark's comparison).
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Iterable, Mapping
from typing import Literal

import msgspec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from kuma.resources.model import SERVICE_TAG

from .ca import CLOCK_SKEW, CertificateAuthority

WorkloadKeyType = Literal["ECDSA", "RSA"]

_EMPTY_NAME = x509.Name([])
_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=True,
    data_encipherment=False,
    key_agreement=True,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)
_EXT_KEY_USAGE = x509.ExtendedKeyUsage(
    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
)
_NOT_CA = x509.BasicConstraints(ca=False, path_length=None)
_CURVE = ec.SECP256R1()


class Identity(msgspec.Struct, frozen=True):
    """One issued workload certificate. ``key_pem`` is secret: never log or show it."""

    cert_pem: bytes
    key_pem: bytes
    not_before: float
    not_after: float
    #: The URI SANs, in certificate order.
    sans: tuple[str, ...]
    serial: int

    @property
    def lifetime(self) -> float:
        return self.not_after - self.not_before

    def __repr__(self) -> str:  # never print the key
        return f"Identity(sans={self.sans!r}, not_after={self.not_after!r})"


def _constant_extensions(ca: CertificateAuthority) -> list[x509.Extension[x509.ExtensionType]]:
    cached = _EXTENSIONS.get(id(ca))
    if cached is None or cached[0] is not ca:
        aki = x509.AuthorityKeyIdentifier(ca.key_identifier, None, None)
        extensions: list[x509.Extension[x509.ExtensionType]] = [
            x509.Extension(_KEY_USAGE.oid, True, _KEY_USAGE),
            x509.Extension(_EXT_KEY_USAGE.oid, False, _EXT_KEY_USAGE),
            x509.Extension(_NOT_CA.oid, True, _NOT_CA),
            x509.Extension(aki.oid, False, aki),
        ]
        if len(_EXTENSIONS) > 64:
            _EXTENSIONS.clear()
        cached = _EXTENSIONS[id(ca)] = (ca, extensions)
    return cached[1]


_EXTENSIONS: dict[int, tuple[CertificateAuthority, list[x509.Extension[x509.ExtensionType]]]] = {}


def tag_set(tag_maps: Iterable[Mapping[str, str]]) -> dict[str, tuple[str, ...]]:
    """Kuma's MultiValueTagSet: every tag key → its sorted distinct values."""
    merged: dict[str, set[str]] = {}
    for tags in tag_maps:
        for key, value in tags.items():
            merged.setdefault(key, set()).add(value)
    return {key: tuple(sorted(values)) for key, values in sorted(merged.items())}


def identity_sans(mesh: str, tags: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    """The URI SANs of a proxy with these tags, in Kuma's order."""
    sans = [f"spiffe://{mesh}/{service}" for service in tags.get(SERVICE_TAG, ())]
    for key in sorted(tags):
        sans.extend(f"kuma://{key}/{value}" for value in tags[key])
    return tuple(sans)


def service_spiffe_id(mesh: str, service: str) -> str:
    return f"spiffe://{mesh}/{service}"


def issue(
    ca: CertificateAuthority,
    mesh: str,
    tags: Mapping[str, tuple[str, ...]],
    lifetime: float,
    *,
    now: float,
    key_type: WorkloadKeyType = "ECDSA",
) -> Identity:
    """A new key and certificate for a proxy of ``mesh`` with ``tags`` (a :func:`tag_set`)."""
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if key_type == "ECDSA":
        key = ec.generate_private_key(_CURVE)
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sans = identity_sans(mesh, tags)
    start = datetime.datetime.fromtimestamp(now, datetime.UTC) - CLOCK_SKEW
    end = datetime.datetime.fromtimestamp(now + lifetime, datetime.UTC)
    serial = secrets.randbits(128) + 1
    # The constructor with ready-made extensions skips add_extension's per-call checks: this
    # runs once per proxy and per rotation, 10,000 times when a large mesh turns mTLS on.
    san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(s) for s in sans])
    builder = x509.CertificateBuilder(
        ca.cert.subject,
        _EMPTY_NAME,
        key.public_key(),
        serial,
        start,
        end,
        # An empty subject makes the SAN extension critical (RFC 5280 4.2.1.6), as Go does.
        [*_constant_extensions(ca), x509.Extension(san.oid, True, san)],
    )
    cert = builder.sign(ca.key, ca.signature_hash)
    return Identity(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        not_before=start.timestamp(),
        not_after=end.timestamp(),
        sans=sans,
        serial=serial,
    )

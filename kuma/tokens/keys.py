"""Signing keys: Kuma's names, RSA keys as PEM, and reading them from secrets.

Dataplane-token keys are mesh Secrets ``dataplane-token-signing-key-<mesh>-<serial>``;
zone-token keys are GlobalSecrets ``zone-token-signing-key-<serial>`` (on a federated zone,
``zone-token-signing-public-key-<serial>``: the public half global sends). The serial is the
token's ``kid``; the newest (highest) serial signs, every present serial verifies. Revocation
lists are the Secret ``dataplane-token-revocations-<mesh>`` and the GlobalSecret
``zone-token-revocations``: comma-separated token ids (``jti``).
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from kuma.resources import GlobalSecret, Resource, Secret

#: The ``kid`` of the key created with each mesh.
DEFAULT_KID = "1"
RSA_BITS = 2048
DATAPLANE_KEY_PREFIX = "dataplane-token-signing-key-"
ZONE_KEY_PREFIX = "zone-token-signing-key"
#: What a zone holds of global's zone-token keys: the public half (kuma/kds/secrets.py).
ZONE_PUBLIC_KEY_PREFIX = "zone-token-signing-public-key"
ZONE_REVOCATIONS = "zone-token-revocations"
DATAPLANE_REVOCATIONS_PREFIX = "dataplane-token-revocations-"


class SigningKeyError(ValueError):
    """A signing key that cannot be used; the message says why (never the key)."""


def dataplane_key_prefix(mesh: str) -> str:
    return f"{DATAPLANE_KEY_PREFIX}{mesh}"


def key_name(prefix: str, kid: str) -> str:
    return f"{prefix}-{kid}"


def dataplane_revocations_name(mesh: str) -> str:
    return f"{DATAPLANE_REVOCATIONS_PREFIX}{mesh}"


def serial_of(name: str, prefix: str) -> int | None:
    """The serial of a key named ``<prefix>-<serial>``; None for any other name."""
    head, dash, tail = name.rpartition("-")
    if head != prefix or not dash or not tail.isdigit():
        return None
    return int(tail)


def dataplane_key_of(resource: Resource) -> tuple[str, str] | None:
    """(mesh, kid) when ``resource`` is a dataplane-token signing key."""
    if not isinstance(resource, Secret):
        return None
    serial = serial_of(resource.name, dataplane_key_prefix(resource.mesh))
    return None if serial is None else (resource.mesh, str(serial))


def zone_key_of(resource: Resource, prefix: str = ZONE_KEY_PREFIX) -> str | None:
    """The kid when ``resource`` is a zone-token key named ``<prefix>-<serial>`` (a federated
    zone's prefix is ``ZONE_PUBLIC_KEY_PREFIX``)."""
    if not isinstance(resource, GlobalSecret):
        return None
    serial = serial_of(resource.name, prefix)
    return None if serial is None else str(serial)


def new_signing_key() -> bytes:
    """A fresh RSA-2048 private key as PEM (PKCS#1, as Kuma writes it)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


@lru_cache(maxsize=256)
def load_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    """Parsing an RSA key costs milliseconds: each distinct key is parsed once."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"not a PEM private key ({type(exc).__name__})") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SigningKeyError("not an RSA private key")
    return key


@lru_cache(maxsize=1024)
def load_public_key(pem: bytes) -> rsa.RSAPublicKey:
    """A public key from PEM (SubjectPublicKeyInfo or PKCS#1), or the public half of a
    private key's PEM."""
    if b"PRIVATE KEY" in pem:
        return load_private_key(pem).public_key()
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"not a PEM public key ({type(exc).__name__})") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise SigningKeyError("not an RSA public key")
    return key


def public_pem(private_pem: bytes) -> bytes:
    return (
        load_private_key(private_pem)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def parse_revocations(data: bytes) -> frozenset[str]:
    """Kuma's revocation list: token ids separated by commas (a trailing newline allowed)."""
    text = data.decode("utf-8", errors="replace").strip()
    return frozenset(part.strip() for part in text.split(",") if part.strip())

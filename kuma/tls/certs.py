"""Certificates with ``cryptography``: the generated control-plane certificate (self-signed,
CA-capable, as Kuma's), a leaf issued from it for a host it does not name, PEM parsing.

Kuma generates one per instance, in each instance's work directory. Here the generated
certificate is kept in the store (see :mod:`.persisted`), so every instance and every restart
serves the same CA: kuma-dp trusts one file whichever instance it reaches.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
from collections.abc import Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: Kuma's generated certificate is valid for ten years.
VALIDITY = datetime.timedelta(days=3650)
RSA_BITS = 2048
#: The key types of a generated certificate.
KEY_TYPES = ("ECDSA", "RSA")
#: What kuma-cp generates. Kuma's is RSA-2048; a P-256 key makes each TLS handshake, which
#: every connecting proxy costs kuma-cp, much cheaper to sign (benchmarks/RESULTS.md,
#: bench_tls_handshake), and every client here (Envoy, kuma-dp, kumactl, browsers) takes it.
DEFAULT_KEY_TYPE = "ECDSA"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

SubjectName = x509.DNSName | x509.IPAddress


class CertificateError(ValueError):
    """A certificate or key that cannot be used; the message says why (never the key)."""


def local_names() -> list[str]:
    """What a proxy may use to reach this host: localhost, the host name, loopback and every
    address of the host name (Kuma: hostname, localhost, all IPs)."""
    names = ["localhost", "127.0.0.1", "::1"]
    hostname = socket.gethostname()
    names.append(hostname)
    try:
        infos = socket.getaddrinfo(hostname, None)
    except OSError:
        infos = []
    names.extend(str(info[4][0]) for info in infos)
    return list(dict.fromkeys(names))


def subject_names(names: Iterable[str]) -> list[SubjectName]:
    result: list[SubjectName] = []
    for name in dict.fromkeys(names):
        try:
            result.append(x509.IPAddress(ipaddress.ip_address(name.partition("%")[0])))
        except ValueError:
            result.append(x509.DNSName(name))
    return result


def _key(key_type: str) -> PrivateKey:
    if key_type == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    if key_type == "ECDSA":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"key type {key_type!r}: must be one of {', '.join(KEY_TYPES)}")


def _pem_key(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def generate_ca_certificate(
    names: Sequence[str], key_type: str = DEFAULT_KEY_TYPE
) -> tuple[bytes, bytes]:
    """A self-signed certificate that may also sign (IsCA), for ``names``: (cert PEM, key PEM)."""
    key = _key(key_type)
    # RSA keys encipher (TLS 1.2 RSA key exchange); an EC key only signs.
    rsa_key = isinstance(key, rsa.RSAPrivateKey)
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kuma-control-plane")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=rsa_key,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(subject_names(names)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def load_pair(cert_pem: bytes, key_pem: bytes) -> tuple[x509.Certificate, PrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise CertificateError(f"not a PEM certificate ({exc})") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"not a PEM private key ({type(exc).__name__})") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise CertificateError("the key is neither an RSA nor an EC key")
    if key.public_key() != cert.public_key():
        raise CertificateError("the key does not belong to the certificate")
    return cert, key


def names_of(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(n) for n in san.get_values_for_type(x509.DNSName)} | {
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)
    }


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def issue_leaf(ca_cert_pem: bytes, ca_key_pem: bytes, names: Sequence[str]) -> tuple[bytes, bytes]:
    """A serving certificate for ``names`` signed by the CA: (chain PEM: leaf then CA, key)."""
    ca_cert, ca_key = load_pair(ca_cert_pem, ca_key_pem)
    key = _key("RSA" if isinstance(ca_key, rsa.RSAPrivateKey) else "ECDSA")
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kuma-control-plane")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(min(now + VALIDITY, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(subject_names(names)), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca_cert_pem
    return chain, _pem_key(key)

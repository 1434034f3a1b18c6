"""A mesh's certificate authority: generate a builtin root, load one from PEM, check a
provided one (Kuma: pkg/plugins/ca/builtin/ca.go, pkg/plugins/ca/provided/ca_cert_validator.go).

A builtin root is what Kuma creates: subject O=Kuma, OU=Mesh, CN=<mesh>, URI SAN
``spiffe://<mesh>``, CA:TRUE, keyCertSign + cRLSign, valid from 10 s ago for the configured
lifetime (10 years by default); RSA of ``RSAbits`` (2048 by default) or, when the backend asks
for ``keyType: ECDSA``, a P-256 key, whose signatures cost a small fraction of RSA's.
"""

from __future__ import annotations

import datetime
import secrets

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from kuma.resources.mtls import BuiltinConf

#: Kuma's DefaultAllowedClockSkew: certificates start this long before "now".
CLOCK_SKEW = datetime.timedelta(seconds=10)

CaPrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class CaError(ValueError):
    """A CA that cannot be used; the message names the reason (never key material)."""


class CertificateAuthority:
    """A CA's certificate and private key, parsed once (every issuance reuses them)."""

    __slots__ = ("cert", "cert_pem", "key", "key_identifier", "not_after")

    def __init__(self, cert: x509.Certificate, key: CaPrivateKey) -> None:
        self.cert = cert
        self.key = key
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        self.not_after = cert.not_valid_after_utc
        try:
            ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            self.key_identifier = ski.digest
        except x509.ExtensionNotFound:
            self.key_identifier = x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest

    @property
    def key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (for the Secret that stores it)."""
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def signature_hash(self) -> hashes.SHA256:
        return hashes.SHA256()

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes) -> CertificateAuthority:
        """Parse a stored CA; CaError with Kuma's messages when it is not a usable CA."""
        problems = validate_ca(cert_pem, key_pem)
        if problems:
            raise CaError("; ".join(f"{field}: {message}" for field, message in problems))
        cert = x509.load_pem_x509_certificates(cert_pem)[0]
        key = serialization.load_pem_private_key(key_pem, password=None)
        assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
        return cls(cert, key)


def generate_root(
    mesh: str, conf: BuiltinConf, now: datetime.datetime | None = None
) -> CertificateAuthority:
    """A new self-signed root for ``mesh`` as Kuma's builtin CA makes it."""
    key: CaPrivateKey
    if conf.key_type == "ECDSA":
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=conf.rsa_bits)
    now = now or datetime.datetime.now(datetime.UTC)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Kuma"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Mesh"),
            x509.NameAttribute(NameOID.COMMON_NAME, mesh),
        ]
    )
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(secrets.randbits(127) + 1)
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(seconds=conf.lifetime))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"spiffe://{mesh}")]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    return CertificateAuthority(builder.sign(key, hashes.SHA256()), key)


# Kuma's messages (pkg/plugins/ca/provided/ca_cert_validator.go).
NOT_CA = "basic constraint 'CA' must be set to 'true' (see X509-SVID: 4.1. Basic Constraints)"
NO_CERT_SIGN = "key usage extension 'keyCertSign' must be set (see X509-SVID: 4.3. Key Usage)"
KEY_AGREEMENT = (
    "key usage extension 'keyAgreement' must NOT be set "
    "(see X509-SVID: Appendix A. X.509 Field Reference)"
)


def validate_ca(cert_pem: bytes, key_pem: bytes) -> list[tuple[str, str]]:
    """Kuma's checks of a provided CA: (field, message) per problem, empty when usable."""
    try:
        certs = x509.load_pem_x509_certificates(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as error:
        return [("cert", f"not a valid TLS key pair: {_reason(error)}")]
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        return [("cert", "not a valid TLS key pair: unsupported private key type")]
    if certs[0].public_key() != key.public_key():
        return [("cert", "not a valid TLS key pair: private key does not match public key")]
    problems: list[tuple[str, str]] = []
    for i, cert in enumerate(certs):
        field = f"cert[{i}]"
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            problems.append((field, NOT_CA))
        try:
            usage: x509.KeyUsage | None = cert.extensions.get_extension_for_class(
                x509.KeyUsage
            ).value
        except x509.ExtensionNotFound:
            usage = None
        if usage is None or not usage.key_cert_sign:
            problems.append((field, NO_CERT_SIGN))
        if usage is not None and usage.key_agreement:
            problems.append((field, KEY_AGREEMENT))
    return problems


def _reason(error: Exception) -> str:
    # cryptography's messages name the structure that failed, never key bytes.
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:200]

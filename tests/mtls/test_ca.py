"""The CA and workload certificates: Kuma's fields, SANs, lifetimes, key types, provided-CA
checks with Kuma's messages."""

from __future__ import annotations

import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kuma.mtls.ca import (
    KEY_AGREEMENT,
    NO_CERT_SIGN,
    NOT_CA,
    CaError,
    CertificateAuthority,
    generate_root,
    validate_ca,
)
from kuma.mtls.issuer import identity_sans, issue, tag_set
from kuma.resources.mtls import BuiltinConf


@pytest.fixture(scope="module")
def ecdsa_ca() -> CertificateAuthority:
    return generate_root("default", BuiltinConf(key_type="ECDSA"))


def test_builtin_root_is_kumas(ecdsa_ca: CertificateAuthority) -> None:
    cert = ecdsa_ca.cert
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "default"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Kuma"
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://default"]
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert abs(lifetime.total_seconds() - (10 * 365 * 86400 + 10)) < 5
    assert isinstance(ecdsa_ca.key, ec.EllipticCurvePrivateKey)
    assert validate_ca(ecdsa_ca.cert_pem, ecdsa_ca.key_pem) == []


def test_rsa_root_has_the_configured_size() -> None:
    ca = generate_root("m", BuiltinConf(rsa_bits=2048, lifetime=3600))
    assert isinstance(ca.key, rsa.RSAPrivateKey)
    assert ca.key.key_size == 2048
    again = CertificateAuthority.from_pem(ca.cert_pem, ca.key_pem)
    assert again.cert == ca.cert


def test_workload_certificate(ecdsa_ca: CertificateAuthority) -> None:
    tags = tag_set(
        [
            {"kuma.io/service": "web", "version": "v1", "kuma.io/protocol": "http"},
            {"kuma.io/service": "web-api", "version": "v1"},
        ]
    )
    now = time.time()
    identity = issue(ecdsa_ca, "default", tags, 3600, now=now)
    cert = x509.load_pem_x509_certificate(identity.cert_pem)
    assert list(cert.subject) == []
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://default/web",
        "spiffe://default/web-api",
        "kuma://kuma.io/protocol/http",
        "kuma://kuma.io/service/web",
        "kuma://kuma.io/service/web-api",
        "kuma://version/v1",
    ]
    assert identity.sans == tuple(san.value.get_values_for_type(x509.UniformResourceIdentifier))
    assert cert.issuer == ecdsa_ca.cert.subject
    assert abs(cert.not_valid_before_utc.timestamp() - (now - 10)) < 1
    assert abs(cert.not_valid_after_utc.timestamp() - (now + 3600)) < 1
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usage) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    cert.verify_directly_issued_by(ecdsa_ca.cert)
    assert "PRIVATE KEY" not in repr(identity)


def test_rsa_workload_key_and_rsa_ca() -> None:
    ca = generate_root("m", BuiltinConf())
    identity = issue(
        ca, "m", tag_set([{"kuma.io/service": "a"}]), 60, now=time.time(), key_type="RSA"
    )
    cert = x509.load_pem_x509_certificate(identity.cert_pem)
    assert isinstance(cert.public_key(), rsa.RSAPublicKey)
    cert.verify_directly_issued_by(ca.cert)


def test_serials_differ(ecdsa_ca: CertificateAuthority) -> None:
    tags = tag_set([{"kuma.io/service": "a"}])
    serials = {issue(ecdsa_ca, "default", tags, 60, now=time.time()).serial for _ in range(5)}
    assert len(serials) == 5


def test_sans_for_gateway_style_tags() -> None:
    assert identity_sans("m", {"kuma.io/service": ("edge",)}) == (
        "spiffe://m/edge",
        "kuma://kuma.io/service/edge",
    )


def test_provided_ca_checks(ecdsa_ca: CertificateAuthority) -> None:
    leaf = issue(ecdsa_ca, "default", tag_set([{"kuma.io/service": "a"}]), 60, now=time.time())
    assert validate_ca(leaf.cert_pem, leaf.key_pem) == [
        ("cert[0]", NOT_CA),
        ("cert[0]", NO_CERT_SIGN),
        ("cert[0]", KEY_AGREEMENT),
    ]
    other = generate_root("x", BuiltinConf(key_type="ECDSA"))
    problems = validate_ca(ecdsa_ca.cert_pem, other.key_pem)
    assert problems == [("cert", "not a valid TLS key pair: private key does not match public key")]
    problems = validate_ca(b"garbage", ecdsa_ca.key_pem)
    assert problems[0][0] == "cert"
    assert problems[0][1].startswith("not a valid TLS key pair: ")
    with pytest.raises(CaError, match="basic constraint 'CA'"):
        CertificateAuthority.from_pem(leaf.cert_pem, leaf.key_pem)
    # The key never appears in an error.
    with pytest.raises(CaError) as raised:
        CertificateAuthority.from_pem(b"garbage", ecdsa_ca.key_pem)
    assert "PRIVATE" not in str(raised.value)

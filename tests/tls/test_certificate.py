"""The control plane's certificate: generated once and kept in the store, whoever asks
first; a leaf for a host the stored certificate does not name; files when given."""

from __future__ import annotations

import ssl

import anyio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from kuma.resources import GlobalSecret, ResourceKey
from kuma.store.memory import MemoryStore
from kuma.tls import persisted
from kuma.tls.certs import (
    KEY_TYPES,
    CertificateError,
    generate_ca_certificate,
    is_ca,
    issue_leaf,
    load_pair,
    names_of,
)
from kuma.tls.persisted import ServingCertificate, serving_certificate

pytestmark = pytest.mark.anyio


async def test_instances_racing_on_one_store_serve_one_certificate() -> None:
    store = MemoryStore()
    served: list[ServingCertificate] = []

    async def one() -> None:
        served.append(await serving_certificate(store))

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(one)
    assert len({s.trusted for s in served}) == 1
    assert (await store.list(GlobalSecret.TYPE)).total == 1
    stored = await store.get(ResourceKey(GlobalSecret.TYPE, "", "control-plane-tls"))
    assert repr(stored.resource) == "GlobalSecret(name='control-plane-tls', data=<redacted>)"
    cert = x509.load_pem_x509_certificate(served[0].trusted)
    assert is_ca(cert)
    assert {"localhost", "127.0.0.1", "::1"} <= names_of(cert)
    # A restart reads it back.
    assert (await serving_certificate(store)).trusted == served[0].trusted
    served[0].server_context()  # the pair loads into an SSL context


async def test_another_host_serves_a_leaf_of_the_stored_certificate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = MemoryStore()
    first = await serving_certificate(store)
    monkeypatch.setattr("kuma.tls.persisted.socket.gethostname", lambda: "elsewhere.example")
    monkeypatch.setattr(persisted, "local_names", lambda: ["elsewhere.example", "10.9.9.9"])
    other = await serving_certificate(store)
    assert other.trusted == first.trusted  # proxies trust the same file
    leaf = x509.load_pem_x509_certificate(other.chain)
    assert names_of(leaf) == {"elsewhere.example", "10.9.9.9"}
    assert not is_ca(leaf)
    context = ssl.create_default_context(cadata=first.trusted.decode())
    assert context.cert_store_stats()["x509_ca"] == 1
    chain, key = issue_leaf(first.trusted, first.key, ["x.example"])
    load_pair(chain, key)


async def test_given_files_are_checked(tmp_path: object) -> None:
    cert, key = generate_ca_certificate(["localhost"])
    other_cert, _ = generate_ca_certificate(["localhost"])
    with pytest.raises(CertificateError, match="does not belong"):
        load_pair(other_cert, key)
    with pytest.raises(CertificateError, match="go together"):
        await serving_certificate(MemoryStore(), "cert.pem", "")
    with pytest.raises(CertificateError, match="not a PEM private key"):
        load_pair(cert, b"nope")


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_each_key_type_serves_and_signs_leaves(key_type: str) -> None:
    cert, key = generate_ca_certificate(["localhost"], key_type=key_type)
    ServingCertificate(chain=cert, key=key, trusted=cert, source=key_type).server_context()
    chain, leaf_key = issue_leaf(cert, key, ["x.example"])
    loaded, _ = load_pair(chain, leaf_key)
    assert names_of(loaded) == {"x.example"}
    other, _ = generate_ca_certificate(
        ["localhost"], key_type=next(k for k in KEY_TYPES if k != key_type)
    )
    with pytest.raises(CertificateError, match="does not belong"):
        load_pair(other, key)


def test_the_default_is_an_ecdsa_key_and_other_keys_are_refused() -> None:
    cert, _ = generate_ca_certificate(["localhost"])
    assert isinstance(x509.load_pem_x509_certificate(cert).public_key(), ec.EllipticCurvePublicKey)
    ed = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(CertificateError, match="neither an RSA nor an EC key"):
        load_pair(cert, ed)
    with pytest.raises(ValueError, match="key type 'DSA'"):
        generate_ca_certificate(["localhost"], key_type="DSA")

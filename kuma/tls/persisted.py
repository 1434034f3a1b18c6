"""The certificate kuma-cp serves (dp server, HTTPS API): from ``tlsCertFile``/``tlsKeyFile``
when given, else the generated one kept in the store.

The generated certificate and its key live in the GlobalSecret ``control-plane-tls`` (``data``:
the certificate PEM then the key PEM), created by the first instance with an atomic ``create``;
every other instance and every restart reads it. Its names are those of the host that created
it (localhost, loopback, host name, host addresses); an instance on another host, whose name it
lacks, serves a leaf certificate issued from it for its own names: proxies trust the one
stored certificate either way.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import socket
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kuma.resources import GlobalSecret, ResourceKey
from kuma.store import AlreadyExistsError, NotFoundError, Store

from .certs import (
    CertificateError,
    generate_ca_certificate,
    is_ca,
    issue_leaf,
    load_pair,
    local_names,
    names_of,
)

log = logging.getLogger("kuma.tls")

SECRET_NAME = "control-plane-tls"
#: Where kuma-cp writes the certificate proxies should trust (kuma-dp --ca-cert-file).
CA_FILE_NAME = "kuma-cp.crt"


@dataclass(frozen=True)
class ServingCertificate:
    #: What the servers present: the certificate (and the CA behind it, for a leaf).
    chain: bytes
    key: bytes
    #: What clients should trust: the generated certificate, or the given certificate file.
    trusted: bytes
    source: str

    def server_context(self) -> ssl.SSLContext:
        """A TLS 1.2+ server context offering HTTP/2 (gRPC) and HTTP/1.1 (bootstrap, API)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(["h2", "http/1.1"])
        # load_cert_chain reads files only: a private directory, removed at once.
        with tempfile.TemporaryDirectory(prefix="kuma-cp-tls-") as directory:
            chain, key = Path(directory, "chain.pem"), Path(directory, "key.pem")
            chain.write_bytes(self.chain)
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with open(fd, "wb") as file:
                file.write(self.key)
            context.load_cert_chain(chain, key)
        return context


def _split_bundle(data: bytes) -> tuple[bytes, bytes]:
    marker = data.find(b"-----BEGIN", data.find(b"-----END CERTIFICATE-----"))
    if marker < 0:
        raise CertificateError(f"GlobalSecret {SECRET_NAME} holds no certificate and key")
    return data[:marker], data[marker:]


async def _stored_or_created(store: Store) -> tuple[bytes, bytes]:
    key = ResourceKey(GlobalSecret.TYPE, "", SECRET_NAME)
    for _ in range(3):
        try:
            stored = await store.get(key)
        except NotFoundError:
            cert, private = generate_ca_certificate(local_names())
            secret = GlobalSecret(name=SECRET_NAME, data=base64.b64encode(cert + private).decode())
            try:
                await store.create(secret)
            except AlreadyExistsError:
                continue  # another instance was first: serve theirs
            log.info("generated the control plane's TLS certificate (GlobalSecret %s)", SECRET_NAME)
            return cert, private
        assert isinstance(stored.resource, GlobalSecret)
        return _split_bundle(stored.resource.value)
    raise CertificateError(f"GlobalSecret {SECRET_NAME} keeps appearing and vanishing")


def _from_files(cert_file: str, key_file: str) -> ServingCertificate:
    chain, key = Path(cert_file).read_bytes(), Path(key_file).read_bytes()
    load_pair(chain, key)
    return ServingCertificate(chain, key, chain, f"file {cert_file}")


async def serving_certificate(
    store: Store, cert_file: str = "", key_file: str = ""
) -> ServingCertificate:
    """Raises CertificateError (or OSError for unreadable files)."""
    if cert_file or key_file:
        if not (cert_file and key_file):
            raise CertificateError("tlsCertFile and tlsKeyFile go together")
        return _from_files(cert_file, key_file)
    cert_pem, key_pem = await _stored_or_created(store)
    cert, _ = load_pair(cert_pem, key_pem)
    hostname = socket.gethostname()
    if hostname in names_of(cert) or not is_ca(cert):
        return ServingCertificate(cert_pem, key_pem, cert_pem, f"GlobalSecret {SECRET_NAME}")
    chain, leaf_key = issue_leaf(cert_pem, key_pem, local_names())
    return ServingCertificate(chain, leaf_key, cert_pem, f"issued from GlobalSecret {SECRET_NAME}")


def write_trusted(certificate: ServingCertificate, work_dir: Path) -> Path | None:
    """Write the certificate proxies should trust to ``<workDir>/kuma-cp.crt`` (public)."""
    path = work_dir.expanduser() / CA_FILE_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(certificate.trusted)
        temporary.replace(path)
    except OSError as exc:
        log.warning("cannot write %s: %s", path, exc.strerror or exc)
        with contextlib.suppress(OSError):
            path.with_suffix(".tmp").unlink()
        return None
    return path

"""kuma-cp's TLS servers' certificates, from the configuration: ``dpServer.tlsCertFile`` or
``apiServer.https.tlsCertFile``, else ``general.tlsCertFile``, else the certificate generated
once and kept in the store (kuma/tls/persisted.py). The certificate proxies should trust is
written to ``<general.workDir>/kuma-cp.crt`` for ``kuma-dp --ca-cert-file``."""

from __future__ import annotations

import asyncio.sslproto
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from kuma.store import Store
from kuma.tls.certs import CertificateError, names_of
from kuma.tls.persisted import ServingCertificate, serving_certificate, write_trusted

from .config import ConfigError, CpConfig
from .logs import fields

log = logging.getLogger("kuma.cp")

#: Bytes asyncio's SSL protocol reads at a time. Its default (256 KiB) is allocated for every
#: connection: 10,000 sidecars held 2.5 GB in read buffers alone. The server mostly writes;
#: what it reads (ACKs, a 61 KB first request) costs a few more ``read`` calls in 8 KiB steps.
#: Server memory per idle TLS connection (1,000 connections, CPython 3.11): 256 KiB buffer
#: ~290 KB, 32 KiB 54.5 KB, 16 KiB 38.5 KB, 4 KiB 26.5 KB; plain TCP 1.7 KB.
TLS_READ_BUFFER = 8 * 1024

#: TLS 1.3 session tickets the dp server issues after each handshake. OpenSSL's default is two,
#: so that a client may open two connections resuming the session; a proxy keeps one ADS
#: connection and resumes it with one ticket (a resumed connection gets a new one). Each
#: ticket is a session encrypted and sent in a record of its own: the second cost ~20 µs of
#: the server's ~275 µs handshake (in-process, ECDSA P-256, TLS 1.3), for every connecting
#: proxy.
DP_SESSION_TICKETS = 1


def use_small_tls_buffers() -> None:
    """Lower the per-connection read buffer of asyncio's SSL protocol for this process. The
    size is a class attribute with no public setting (CPython 3.11+ ``asyncio.sslproto``);
    it only bounds how much one ``read`` takes from the SSL object."""
    asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER


def dp_server_context(certificate: ServingCertificate) -> ssl.SSLContext:
    """The dp server's TLS context (ADS and /bootstrap): the certificate's server context,
    issuing one session ticket per handshake."""
    context = certificate.server_context()
    context.num_tickets = DP_SESSION_TICKETS
    return context


@dataclass(frozen=True)
class ServerTls:
    #: The dp server's context and the certificate proxies trust (None: plain text).
    dp: ssl.SSLContext | None
    dp_trusted: str
    #: The names (DNS and IP SANs) of the dp server's certificate.
    dp_names: frozenset[str]
    #: The HTTPS API's context (None: HTTPS off).
    api: ssl.SSLContext | None


async def load_certificate(
    store: Store, key: str, cert_file: str, key_file: str
) -> ServingCertificate:
    try:
        return await serving_certificate(store, cert_file, key_file)
    except CertificateError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {exc.filename}: {exc.strerror}") from None


async def prepare_tls(store: Store, config: CpConfig) -> ServerTls:
    general = config.general
    dp_server, https = config.dp_server, config.api_server.https
    dp: ssl.SSLContext | None = None
    trusted = ""
    names: frozenset[str] = frozenset()
    if dp_server.tls_enabled or https.enabled:
        use_small_tls_buffers()
    if dp_server.tls_enabled:
        use_own = bool(dp_server.tls_cert_file or dp_server.tls_key_file)
        key = "dpServer.tlsCertFile" if use_own else "general.tlsCertFile"
        certificate = await load_certificate(
            store,
            key,
            dp_server.tls_cert_file if use_own else general.tls_cert_file,
            dp_server.tls_key_file if use_own else general.tls_key_file,
        )
        dp = dp_server_context(certificate)
        trusted = certificate.trusted.decode()
        names = frozenset(names_of(x509.load_pem_x509_certificate(certificate.chain)))
        written = write_trusted(certificate, Path(general.work_dir))
        log.info(
            "dp server TLS",
            extra=fields(certificate=certificate.source, trusted_by_proxies=str(written)),
        )
    else:
        log.warning(
            "dpServer.tlsEnabled is false: ADS and /bootstrap are plain text, dataplane tokens "
            "cross the network readable (use only in a lab or a benchmark)"
        )
    api: ssl.SSLContext | None = None
    if https.enabled:
        use_own = bool(https.tls_cert_file or https.tls_key_file)
        certificate = await load_certificate(
            store,
            "apiServer.https.tlsCertFile" if use_own else "general.tlsCertFile",
            https.tls_cert_file if use_own else general.tls_cert_file,
            https.tls_key_file if use_own else general.tls_key_file,
        )
        api = certificate.server_context()
    return ServerTls(dp, trusted, names, api)

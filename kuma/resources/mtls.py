"""The typed form of a Mesh's ``mtls`` section (Kuma's ``Mesh.Mtls``) and its CA backends.

The Mesh resource keeps ``mtls`` as the document the user wrote (a round trip gives it back
unchanged); :func:`mesh_mtls` decodes it into these structs, which is what validation, the CA
and generation read. Decoding is cached per document (a Mesh is frozen: same object, same
answer).

Backend ``conf`` is per type (Kuma's plugin configs, which Kuma decodes ignoring unknown keys):

* ``builtin``: ``caCert: {RSAbits, expiration, keyType}``. ``keyType`` is this project's
  extension: ``ECDSA`` asks for an ECDSA P-256 root instead of RSA (Kuma ignores the key, so
  the YAML stays valid for Kuma, where it means an RSA root).
* ``provided``: ``cert`` and ``key``, each a Kuma DataSource (``secret``, ``inline`` (base64),
  ``inlineString``; ``file`` is accepted as in Kuma).
"""

from __future__ import annotations

import base64
import re
from typing import Any, Literal

import msgspec

from .model import Mesh

BUILTIN = "builtin"
PROVIDED = "provided"
CA_TYPES = (BUILTIN, PROVIDED)
STRICT = "STRICT"
PERMISSIVE = "PERMISSIVE"

Mode = Literal["STRICT", "PERMISSIVE"]
KeyType = Literal["RSA", "ECDSA"]

#: Kuma's defaults (pkg/plugins/ca/builtin, pkg/core/ca/issuer).
DEFAULT_RSA_BITS = 2048
DEFAULT_CA_LIFETIME = 10 * 365 * 24 * 3600.0
DEFAULT_CERT_LIFETIME = 24 * 3600.0


class _Part(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, rename="camel"
):
    pass


class Rotation(_Part, frozen=True):
    expiration: str = ""


class DpCert(_Part, frozen=True):
    rotation: Rotation | None = None
    request_timeout: str | None = None


class RootChain(_Part, frozen=True):
    request_timeout: str | None = None


class CaBackend(_Part, frozen=True):
    name: str = ""
    type: str = ""
    dp_cert: DpCert | None = None
    conf: dict[str, Any] | None = None
    mode: Mode = "STRICT"
    root_chain: RootChain | None = None

    @property
    def cert_lifetime(self) -> float:
        """Seconds a workload certificate lives (``dpCert.rotation.expiration``, default 24h)."""
        text = self.dp_cert.rotation.expiration if self.dp_cert and self.dp_cert.rotation else ""
        seconds = parse_kuma_duration(text) if text else None
        return seconds if seconds else DEFAULT_CERT_LIFETIME


class MeshMtls(_Part, frozen=True):
    enabled_backend: str = ""
    backends: tuple[CaBackend, ...] = ()
    skip_validation: bool = False

    @property
    def enabled(self) -> CaBackend | None:
        """The enabled backend (Kuma's ``GetEnabledCertificateAuthorityBackend``)."""
        if not self.enabled_backend:
            return None
        for backend in self.backends:
            if backend.name == self.enabled_backend:
                return backend
        return None


class MtlsShapeError(ValueError):
    """``mtls`` does not have Kuma's shape; ``path`` is where (``.backends[0].mode``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_cache: dict[int, tuple[dict[str, Any], MeshMtls]] = {}


def decode_mtls(document: dict[str, Any]) -> MeshMtls:
    """``document`` as a :class:`MeshMtls`; :class:`MtlsShapeError` if it has the wrong shape."""
    try:
        return msgspec.convert(document, MeshMtls)
    except msgspec.ValidationError as error:
        text = str(error)
        found = _PATH.search(text)
        path = found.group("path") if found else ""
        raise MtlsShapeError(path, _PATH.sub("", text)) from None


def mesh_mtls(mesh: Mesh | None) -> MeshMtls | None:
    """The mesh's mTLS settings, or None when it has none or they do not decode."""
    if mesh is None or not mesh.mtls:
        return None
    cached = _cache.get(id(mesh.mtls))
    if cached is not None and cached[0] is mesh.mtls:
        return cached[1]
    try:
        decoded = decode_mtls(mesh.mtls)
    except MtlsShapeError:
        return None
    if len(_cache) > 4096:
        _cache.clear()
    _cache[id(mesh.mtls)] = (mesh.mtls, decoded)
    return decoded


def enabled_backend(mesh: Mesh | None) -> CaBackend | None:
    """The mesh's enabled CA backend: mTLS is on exactly when this is not None."""
    mtls = mesh_mtls(mesh)
    return None if mtls is None else mtls.enabled


# --- Kuma's durations (pkg/core/resources/apis/mesh ParseDuration) -----------------------------

_KUMA_DURATION = re.compile(r"([0-9]+)(y|w|d|h|m|s|ms)")
_UNIT_SECONDS = {
    "y": 365 * 86400.0,
    "w": 7 * 86400.0,
    "d": 86400.0,
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 0.001,
}


def parse_kuma_duration(text: str) -> float | None:
    """Seconds in Kuma's CA duration syntax (one number and unit: ``24h``, ``10y``, ``0``),
    else None."""
    if text == "0":
        return 0.0
    found = _KUMA_DURATION.fullmatch(text)
    if found is None:
        return None
    return int(found.group(1)) * _UNIT_SECONDS[found.group(2)]


# --- per-type backend configuration ------------------------------------------------------------


class BuiltinConf(msgspec.Struct, frozen=True):
    rsa_bits: int = DEFAULT_RSA_BITS
    key_type: KeyType = "RSA"
    lifetime: float = DEFAULT_CA_LIFETIME


class BackendConfError(ValueError):
    """A backend's ``conf`` is unusable; ``path`` is relative to ``conf``."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def builtin_conf(backend: CaBackend) -> BuiltinConf:
    """The builtin backend's ``conf.caCert`` (BackendConfError when it cannot be used)."""
    conf = backend.conf or {}
    ca_cert = conf.get("caCert")
    if ca_cert is None:
        return BuiltinConf()
    if not isinstance(ca_cert, dict):
        raise BackendConfError("caCert", "has to be an object")
    bits = ca_cert.get("RSAbits", DEFAULT_RSA_BITS)
    if isinstance(bits, bool) or not isinstance(bits, int | float) or bits != int(bits):
        raise BackendConfError("caCert.RSAbits", "has to be an integer")
    # Stricter than Kuma (which fails later, when it creates the CA): a size the CA can use.
    if not 2048 <= int(bits) <= 8192:
        raise BackendConfError("caCert.RSAbits", "has to be between 2048 and 8192")
    key_type = ca_cert.get("keyType", "RSA")
    if key_type not in ("RSA", "ECDSA"):
        raise BackendConfError("caCert.keyType", 'has to be "RSA" or "ECDSA"')
    lifetime = DEFAULT_CA_LIFETIME
    expiration = ca_cert.get("expiration")
    if expiration:
        parsed = parse_kuma_duration(str(expiration))
        if parsed is None or parsed <= 0:
            raise BackendConfError("caCert.expiration", "has to be a valid format")
        lifetime = parsed
    return BuiltinConf(int(bits), key_type, lifetime)


class DataSource(msgspec.Struct, frozen=True):
    """Kuma's DataSource: exactly one of a mesh Secret's name, a file, or inline bytes."""

    secret: str | None = None
    file: str | None = None
    inline: bytes | None = None


DATA_SOURCE_CHOICE = "data source has to be chosen. Available sources: secret, file, inline"


def data_source(value: Any, field: str) -> DataSource:
    """Decode a DataSource (BackendConfError with Kuma's messages when it is not one)."""
    if not isinstance(value, dict) or not value:
        raise BackendConfError(field, DATA_SOURCE_CHOICE)
    if "secret" in value:
        if not value["secret"] or not isinstance(value["secret"], str):
            raise BackendConfError(f"{field}.secret", "cannot be empty")
        return DataSource(secret=value["secret"])
    if "inline" in value:
        try:
            raw = base64.b64decode(str(value["inline"] or ""), validate=True)
        except ValueError:
            raise BackendConfError(f"{field}.inline", "has to be base64") from None
        if not raw:
            raise BackendConfError(f"{field}.inline", "cannot be empty")
        return DataSource(inline=raw)
    if "inlineString" in value:
        if not value["inlineString"]:
            raise BackendConfError(f"{field}.inlineString", "cannot be empty")
        return DataSource(inline=str(value["inlineString"]).encode())
    if "file" in value:
        if not value["file"]:
            raise BackendConfError(f"{field}.file", "cannot be empty")
        return DataSource(file=str(value["file"]))
    raise BackendConfError(field, DATA_SOURCE_CHOICE)


def provided_conf(backend: CaBackend) -> tuple[DataSource, DataSource]:
    """(cert, key) of a provided backend (BackendConfError naming the first problem)."""
    conf = backend.conf or {}
    if "cert" not in conf:
        raise BackendConfError("cert", "has to be defined")
    if "key" not in conf:
        raise BackendConfError("key", "has to be defined")
    return data_source(conf["cert"], "cert"), data_source(conf["key"], "key")


def builtin_secret_names(mesh: str, backend: str) -> tuple[str, str]:
    """Kuma's names of the builtin CA's Secrets: (certificate, private key)."""
    return f"{mesh}.ca-builtin-cert-{backend}", f"{mesh}.ca-builtin-key-{backend}"

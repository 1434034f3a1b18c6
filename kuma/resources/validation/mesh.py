"""Mesh rules: Kuma's ``mtls`` checks (pkg/core/resources/apis/mesh/mesh_validator.go, and the
per-type backend checks of pkg/plugins/ca/{builtin,provided} that Kuma runs on every Mesh
create and update) with Kuma's paths and messages.

Differences from Kuma, on purpose:

* the builtin backend name rule is reported at ``mtls.backends[i].name`` (Kuma nests it as
  ``mtls.backends[i].conf.mtls.backends.name``);
* a provided CA is checked for presence and shape here; that its Secrets exist and hold a CA
  is checked when the CA is loaded (the store's writes are validated without reading it);
* ``conf.caCert.RSAbits`` must lie in [2048, 8192] (Kuma fails only when creating the CA).
"""

from __future__ import annotations

import re

from ..errors import Violation
from ..model import Mesh
from ..mtls import (
    BUILTIN,
    CA_TYPES,
    PROVIDED,
    BackendConfError,
    CaBackend,
    MtlsShapeError,
    builtin_conf,
    builtin_secret_names,
    data_source,
    decode_mtls,
    parse_kuma_duration,
)
from .common import check_name
from .mesh_sections import check_constraints, check_logging, check_metrics, check_tracing

MAX_BACKENDS = 1
_MAX_SECRET_NAME = 255
# govalidator.IsDNSName, lower case only (Kuma checks IsLowerCase too).
_DNS_NAME = re.compile(r"[a-z0-9_][a-z0-9_-]{0,62}(?:\.[a-z0-9_][a-z0-9_-]{0,62})*[._]?")


def validate_mesh(mesh: Mesh, out: list[Violation]) -> None:
    check_name(out, "name", mesh.name)
    enabled = _validate_mtls(mesh, out)
    check_logging(out, mesh.logging)
    check_tracing(out, mesh.tracing)
    check_metrics(out, mesh.metrics)
    check_constraints(out, mesh.constraints)
    routing = mesh.routing or {}
    if routing.get("zoneEgress") and not enabled:
        out.append(Violation("mtls", "has to be set when zoneEgress enabled"))


CHANGING_CA = (
    "Changing CA when mTLS is enabled is forbidden. Disable mTLS first and then change the CA"
)


def validate_mesh_update(previous: Mesh, new: Mesh) -> list[Violation]:
    """Kuma's update-time rule (managers/apis/mesh/mesh_validator.go): while mTLS stays on,
    the enabled backend may not change. Proxies would be handed certificates of the new CA
    while their peers still trust only the old one; Kuma makes users turn mTLS off first."""
    before, after = _enabled_name(previous), _enabled_name(new)
    if before and after and before != after:
        return [Violation("mtls.enabledBackend", CHANGING_CA)]
    return []


def _enabled_name(mesh: Mesh) -> str:
    if mesh.mtls is None:
        return ""
    try:
        return decode_mtls(mesh.mtls).enabled_backend
    except MtlsShapeError:
        return ""  # reported by validate_mesh


def _validate_mtls(mesh: Mesh, out: list[Violation]) -> str:
    """Check ``mtls``; return the enabled backend's name ("" when none)."""
    if mesh.mtls is None:
        return ""
    try:
        mtls = decode_mtls(mesh.mtls)
    except MtlsShapeError as error:
        out.append(Violation("mtls" + error.path, error.message))
        return ""
    if len(mtls.backends) > MAX_BACKENDS:
        out.append(Violation("mtls.backends", f"cannot have more than {MAX_BACKENDS} backends"))
    used: set[str] = set()
    for i, backend in enumerate(mtls.backends):
        if backend.name in used:
            out.append(
                Violation(
                    f"mtls.backends[{i}].name",
                    f'"{backend.name}" name is already used for another backend',
                )
            )
        used.add(backend.name)
    if mtls.enabled_backend and mtls.enabled_backend not in used:
        out.append(
            Violation("mtls.enabledBackend", "has to be set to one of the backends in the mesh")
        )
    for backend in mtls.backends:
        dp_cert = backend.dp_cert
        expiration = dp_cert.rotation.expiration if dp_cert and dp_cert.rotation else ""
        if dp_cert is not None and parse_kuma_duration(expiration) is None:
            # Kuma's path: under "mtls", lower-case "dpcert", no backend index.
            out.append(Violation("mtls.dpcert.rotation.expiration", "has to be a valid format"))
    for i, backend in enumerate(mtls.backends):
        path = f"mtls.backends[{i}]"
        if backend.type not in CA_TYPES:
            out.append(Violation(f"{path}.type", "could not find installed plugin for this type"))
            break
        if not mtls.skip_validation:
            _validate_backend(mesh.name, backend, path, out)
    return mtls.enabled_backend


def _validate_backend(mesh: str, backend: CaBackend, path: str, out: list[Violation]) -> None:
    if backend.type == BUILTIN:
        try:
            builtin_conf(backend)
        except BackendConfError as error:
            out.append(Violation(f"{path}.conf.{error.path}", error.message))
        secret = builtin_secret_names(mesh, backend.name)[0]
        if len(secret) > _MAX_SECRET_NAME:
            out.append(
                Violation(
                    f"{path}.name", f"Backend name is too long. Max length: {_MAX_SECRET_NAME}"
                )
            )
        if _DNS_NAME.fullmatch(secret) is None:
            out.append(Violation(f"{path}.name", f'"{backend.name}" name must be valid dns name'))
    elif backend.type == PROVIDED:
        conf = backend.conf or {}
        for field in ("cert", "key"):
            if field not in conf:
                out.append(Violation(f"{path}.conf.{field}", "has to be defined"))
                continue
            try:
                data_source(conf[field], field)
            except BackendConfError as error:
                out.append(Violation(f"{path}.conf.{error.path}", error.message))

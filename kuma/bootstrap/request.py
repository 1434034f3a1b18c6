"""Kuma's bootstrap request (``POST /bootstrap``), what is wrong with one, and its Dataplane.

kuma-dp sends ``{mesh, name, proxyType, dataplaneToken, dataplaneResource, dnsPort,
readinessPort, metricsResources, version, ...}`` (``pkg/xds/bootstrap/types/bootstrap_request.go``).
Fields this control plane does not use (features, ...) are accepted and
ignored, so a newer kuma-dp still works.

Two flows, as in Kuma: with ``dataplaneResource`` (the Dataplane as a JSON or YAML string) the
proxy brings its own definition, which is checked here and registered by the control plane when
Envoy connects; without it the Dataplane must already be in the store under ``mesh``/``name``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import msgspec

from kuma.resources import (
    Dataplane,
    DecodeError,
    ResourceKey,
    ValidationError,
    Violation,
    ZoneEgress,
    ZoneIngress,
    decode_one,
    validate,
)
from kuma.store import NotFoundError, Store, StoreError, StoreUnavailableError

#: The proxy type of a sidecar; ZoneIngress (``ingress``) and ZoneEgress (``egress``) are in
#: zone_proxy.py.
DATAPLANE_PROXY_TYPE = "dataplane"


class BootstrapError(Exception):
    """A request that gets no bootstrap: the HTTP status, Kuma's title and detail, and for a
    422 every violation as (field path, message)."""

    def __init__(
        self, status: int, title: str, detail: str, violations: Sequence[Violation] = ()
    ) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.violations = tuple(violations)
        text = "; ".join(str(v) for v in self.violations)
        super().__init__(f"{detail}: {text}" if text else detail)


def bad_request(detail: str) -> BootstrapError:
    return BootstrapError(400, "Bad Request", detail)


def invalid(violations: Sequence[Violation]) -> BootstrapError:
    title = "Could not generate a bootstrap"
    return BootstrapError(422, title, "Resource is not valid", violations)


class _Camel(msgspec.Struct, rename="camel", kw_only=True):
    pass


class KumaDpVersion(_Camel):
    version: str = ""
    git_tag: str = ""
    git_commit: str = ""
    build_date: str = ""


class EnvoyVersion(_Camel):
    version: str = ""
    build: str = ""
    kuma_dp_compatible: bool = False


class Version(_Camel):
    kuma_dp: KumaDpVersion = msgspec.field(default_factory=KumaDpVersion)
    envoy: EnvoyVersion = msgspec.field(default_factory=EnvoyVersion)


class MetricsResources(_Camel):
    #: Where kuma-dp's metrics hijacker listens ("": Kuma's default path).
    socket_path: str = ""
    #: The providedTLS certificate and key files of the Prometheus endpoint (kuma-dp's host).
    cert_path: str = ""
    key_path: str = ""


class BootstrapRequest(_Camel):
    mesh: str = ""
    name: str = ""
    proxy_type: str = DATAPLANE_PROXY_TYPE
    dataplane_token: str = ""
    #: Where kuma-dp read the token from (absolute): with ``enableReloadableTokens`` Envoy
    #: re-reads it on every ADS connection.
    dataplane_token_path: str = ""
    dataplane_resource: str = ""
    #: The port of the proxy's DNS listener (kuma-dp ``--dns-port``), 0: no DNS.
    dns_port: int = 0
    #: The port of kuma-dp's readiness reporter on 127.0.0.1, 0: none (Kuma 2.7.7+).
    readiness_port: int = 0
    #: The CA kuma-dp trusts for the control plane (PEM): Envoy's ADS connection trusts it too.
    ca_cert: str = ""
    metrics_resources: MetricsResources = msgspec.field(default_factory=MetricsResources)
    #: kuma-dp's access-log pipe (MeshAccessLog's Tcp backend), passed on in the node metadata.
    access_log_socket_path: str = ""
    version: Version = msgspec.field(default_factory=Version)


def parse_request(body: bytes) -> BootstrapRequest:
    """Decode the JSON body; a 400 naming the problem (and the field) when it is not a request."""
    try:
        request = msgspec.json.decode(body, type=BootstrapRequest)
    except msgspec.ValidationError as exc:
        text = str(exc)
        reason, _, where = text.partition(" - at `$.")
        field = where.rstrip("`")
        raise bad_request(f"{field}: {reason}" if field else reason) from None
    except msgspec.DecodeError as exc:
        raise bad_request(f"the body is not a JSON bootstrap request: {exc}") from None
    if not 0 <= request.readiness_port <= 65535:
        raise bad_request(f"readinessPort: {request.readiness_port} is not a port")
    socket = request.metrics_resources.socket_path
    if socket and not socket.startswith("/"):
        raise bad_request(f"metricsResources.socketPath: {socket!r} is not an absolute path")
    pipe = request.access_log_socket_path
    if pipe and not pipe.startswith("/"):
        raise bad_request(f"accessLogSocketPath: {pipe!r} is not an absolute path")
    if request.dataplane_token_path and not request.dataplane_token_path.startswith("/"):
        raise bad_request(
            f"dataplaneTokenPath: {request.dataplane_token_path!r} is not an absolute path"
        )
    if not request.proxy_type:
        request.proxy_type = DATAPLANE_PROXY_TYPE
    if not request.dataplane_resource and request.proxy_type == DATAPLANE_PROXY_TYPE:
        missing = [f for f, v in (("mesh", request.mesh), ("name", request.name)) if not v]
        if missing:
            raise bad_request(
                f"{' and '.join(missing)}: required when dataplaneResource is not given"
            )
    return request


def proxy_violations(dataplane: Dataplane) -> list[Violation]:
    """Kuma's rules for a Dataplane a proxy brings: its validation, and no explicit outbounds
    under transparent proxying (the proxy's outbounds then come from the mesh)."""
    violations = validate(dataplane)
    networking = dataplane.networking
    if networking is not None and networking.transparent_proxying and networking.outbound:
        violations.append(
            Violation(
                "networking.outbound",
                "should be empty since dataplane is in Transparent Proxying mode",
            )
        )
    return violations


R = TypeVar("R", Dataplane, ZoneIngress, ZoneEgress)


def decode_proxy_resource(
    text: str, field: str, kind: type[R], proxy_type: str, check: Callable[[R], list[Violation]]
) -> R:
    """The ``kind`` resource of a ``dataplaneResource`` string (the proxy of ``proxy_type``),
    checked by ``check``. Raises ValidationError (the fields of the resource, or ``field`` for
    what is not one)."""
    try:
        resource = decode_one(text)
    except DecodeError as exc:
        raise ValidationError([Violation(exc.field or field, exc.reason)]) from None
    except UnicodeError as exc:
        raise ValidationError([Violation(field, f"not UTF-8 text: {exc}")]) from None
    if not isinstance(resource, kind):
        message = f'must be {kind.TYPE} for proxyType "{proxy_type}", got {resource.TYPE}'
        raise ValidationError([Violation("type", message)])
    violations = check(resource)
    if violations:
        raise ValidationError(violations, subject=str(ResourceKey.of(resource)))
    return resource


def decode_proxy_dataplane(text: str, field: str = "dataplaneResource") -> Dataplane:
    """The Dataplane of a ``dataplaneResource`` string, checked by :func:`proxy_violations`."""
    return decode_proxy_resource(text, field, Dataplane, DATAPLANE_PROXY_TYPE, proxy_violations)


async def resolve_dataplane(request: BootstrapRequest, store: Store) -> Dataplane:
    """The Dataplane the bootstrap is for: the request's own (checked, and its mesh must exist),
    or the stored one named by ``mesh``/``name``. Raises :class:`BootstrapError`."""
    if request.proxy_type != DATAPLANE_PROXY_TYPE:
        raise invalid(
            [
                Violation(
                    "proxyType",
                    f'unsupported proxy type "{request.proxy_type}"; '
                    f'this control plane serves "{DATAPLANE_PROXY_TYPE}", "ingress" and "egress" '
                    "proxies",
                )
            ]
        )
    try:
        if not request.dataplane_resource:
            key = ResourceKey(Dataplane.TYPE, request.mesh, request.name)
            try:
                stored = await store.get(key)
            except NotFoundError:
                raise BootstrapError(404, "Not Found", f"{key} not found") from None
            assert isinstance(stored.resource, Dataplane)
            return stored.resource
        try:
            dataplane = decode_proxy_dataplane(request.dataplane_resource)
        except ValidationError as exc:
            raise invalid(exc.violations) from None
        violations = _identity_violations(request, dataplane)
        if not violations:
            violations = await _mesh_violations(store, dataplane.mesh)
        if violations:
            raise invalid(violations)
        return dataplane
    except StoreUnavailableError as exc:
        detail = f"the store is unavailable: {exc}"
        raise BootstrapError(503, "Service Unavailable", detail) from exc
    except StoreError as exc:
        raise BootstrapError(500, "Internal Server Error", f"the store failed: {exc}") from exc


def _identity_violations(request: BootstrapRequest, dataplane: Dataplane) -> list[Violation]:
    """``name``/``mesh`` of the request, when given, must be those of the resource: the proxy's
    node id is built from them and must name the Dataplane it registers."""
    found = []
    for field, asked, actual in (
        ("mesh", request.mesh, dataplane.mesh),
        ("name", request.name, dataplane.name),
    ):
        if asked and asked != actual:
            found.append(
                Violation(
                    field,
                    f'"{asked}" does not match the {field} of the Dataplane in dataplaneResource '
                    f'("{actual}")',
                )
            )
    return found


async def _mesh_violations(store: Store, mesh: str) -> list[Violation]:
    try:
        await store.get(ResourceKey("Mesh", "", mesh))
    except NotFoundError:
        return [Violation("mesh", f'mesh "{mesh}" does not exist')]
    return []

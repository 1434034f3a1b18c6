"""The typed form of Mesh metrics (Kuma's ``Mesh.Metrics``, ``PrometheusMetricsBackendConfig``)
and the Dataplane's ``metrics`` override.

The Mesh and Dataplane resources keep ``metrics`` as the document the user wrote (a round trip
gives it back unchanged; validation in ``validation/mesh_sections.py`` checks it with Kuma's
messages). What generation, the bootstrap and kuma-dp read is :func:`prometheus_config`: the
Mesh's enabled prometheus backend with Kuma's defaults applied (Kuma writes them into the
stored Mesh, ``mesh_defaulter.go``; here they are applied when reading, so the stored document
stays the user's), with the Dataplane's own prometheus ``metrics.conf`` merged on top as Kuma's
``GetPrometheusConfig`` does (``proto.Merge``: a set scalar wins, maps merge key by key, the
``aggregate`` lists merge by ``name`` with the Dataplane's entry winning).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from .model import Dataplane, Mesh

PROMETHEUS = "prometheus"
#: Kuma's defaults for a prometheus backend (``mesh_defaulter.go``).
DEFAULT_PORT = 5670
DEFAULT_PATH = "/metrics"
DEFAULT_TAGS = {"kuma.io/service": "dataplane-metrics"}

TlsMode = Literal["activeMTLSBackend", "providedTLS", "disabled"]
#: The node metadata key (and bootstrap metadata) naming kuma-dp's metrics hijacker socket.
METRICS_SOCKET_KEY = "metricsSocketPath"
#: ... and the certificate and key files of the ``providedTLS`` endpoint.
METRICS_CERT_KEY = "metricsCertPath"
METRICS_KEY_KEY = "metricsKeyPath"

ACTIVE_MTLS: TlsMode = "activeMTLSBackend"
PROVIDED_TLS: TlsMode = "providedTLS"
DISABLED: TlsMode = "disabled"


class _Part(msgspec.Struct, frozen=True, omit_defaults=True, rename="camel"):
    # Unknown keys are ignored, as Kuma's struct-to-proto conversion of ``conf`` does.
    pass


class Aggregate(_Part, frozen=True):
    """An application endpoint whose metrics kuma-dp merges into the proxy's."""

    name: str = ""
    port: int = 0
    path: str = ""
    enabled: bool | None = None
    address: str = ""


class EnvoyStats(_Part, frozen=True):
    filter_regex: str = ""
    used_only: bool | None = None


class Tls(_Part, frozen=True):
    mode: TlsMode = "activeMTLSBackend"


class PrometheusConfig(_Part, frozen=True):
    port: int = 0
    path: str = ""
    tags: dict[str, str] = msgspec.field(default_factory=dict)
    skip_mtls: bool | None = msgspec.field(default=None, name="skipMTLS")
    aggregate: tuple[Aggregate, ...] = ()
    envoy: EnvoyStats | None = None
    tls: Tls | None = None

    @property
    def tls_mode(self) -> str:
        return ACTIVE_MTLS if self.tls is None else self.tls.mode

    @property
    def envoy_query(self) -> str:
        """Kuma's envoy stats filter as a query (``?filter=<regex>&usedonly``), "" for none.
        Written by hand as Kuma does: Envoy refuses ``usedonly=``."""
        query = ""
        if self.envoy is not None:
            if self.envoy.filter_regex:
                query += "filter=" + self.envoy.filter_regex
            if query:
                query += "&"
            if self.envoy.used_only:
                query += "usedonly"
        return "?" + query if query else ""


def default_socket_path(name: str, mesh: str, directory: str = "/tmp") -> str:
    """Kuma's ``MetricsHijackerSocketName``: ``<dir>/kuma-mh-<name>-<mesh>.sock``, the stem cut
    at 98 characters so the path fits a unix socket address."""
    stem = f"{directory.rstrip('/')}/kuma-mh-{name}-{mesh}"
    return stem[:98] + ".sock"


def _decode(conf: Any) -> PrometheusConfig | None:
    if conf is None:
        return PrometheusConfig()
    try:
        return msgspec.convert(conf, PrometheusConfig)
    except msgspec.ValidationError:
        return None


def with_defaults(config: PrometheusConfig) -> PrometheusConfig:
    """Kuma's Mesh defaulter for a prometheus backend: port, path, tags, and ``tls`` derived
    from ``skipMTLS``."""
    tls = config.tls
    skip = config.skip_mtls
    if tls is None:
        tls = Tls(DISABLED) if skip else Tls(ACTIVE_MTLS)
    elif skip is not None and tls.mode == PROVIDED_TLS:
        skip = None
    return msgspec.structs.replace(
        config,
        port=config.port or DEFAULT_PORT,
        path=config.path or DEFAULT_PATH,
        tags=config.tags or dict(DEFAULT_TAGS),
        skip_mtls=skip,
        tls=tls,
    )


def _merge_bool(base: bool | None, override: bool | None) -> bool | None:
    """``proto.Merge`` of two BoolValue wrappers: a set wrapper is merged field by field, and
    a ``false`` value (proto3's zero) does not replace the base's ``true``."""
    if override is None:
        return base
    return True if override else (base if base is not None else False)


def merge(base: PrometheusConfig, override: PrometheusConfig) -> PrometheusConfig:
    """``override`` merged onto ``base`` as Kuma does (see the module doc)."""
    aggregate = {entry.name: entry for entry in base.aggregate}
    aggregate.update((entry.name, entry) for entry in override.aggregate)
    envoy = base.envoy
    if override.envoy is not None:
        envoy = EnvoyStats(
            override.envoy.filter_regex or (envoy.filter_regex if envoy else ""),
            _merge_bool(envoy.used_only if envoy else None, override.envoy.used_only),
        )
    tls = base.tls
    # proto3: the enum's zero value (activeMTLSBackend) does not override.
    if override.tls is not None and (tls is None or override.tls.mode != ACTIVE_MTLS):
        tls = override.tls
    return PrometheusConfig(
        port=override.port or base.port,
        path=override.path or base.path,
        tags={**base.tags, **override.tags},
        skip_mtls=_merge_bool(base.skip_mtls, override.skip_mtls),
        aggregate=tuple(aggregate.values()),
        envoy=envoy,
        tls=tls,
    )


def enabled_prometheus(mesh: Mesh | None) -> PrometheusConfig | None:
    """The Mesh's enabled backend when it is a prometheus one, with Kuma's defaults."""
    if mesh is None or not isinstance(mesh.metrics, dict):
        return None
    enabled = mesh.metrics.get("enabledBackend")
    backends = mesh.metrics.get("backends")
    if not enabled or not isinstance(backends, list):
        return None
    for backend in backends:
        if isinstance(backend, dict) and backend.get("name") == enabled:
            if backend.get("type") != PROMETHEUS:
                return None
            config = _decode(backend.get("conf"))
            return None if config is None else with_defaults(config)
    return None


def prometheus_config(mesh: Mesh | None, dataplane: Dataplane) -> PrometheusConfig | None:
    """Kuma's ``GetPrometheusConfig``: None unless the Dataplane's mesh has prometheus metrics
    enabled; else the Mesh's backend with the Dataplane's prometheus ``metrics`` merged on."""
    if mesh is None or mesh.name != dataplane.mesh:
        return None
    config = enabled_prometheus(mesh)
    if config is None:
        return None
    own = dataplane.metrics
    if isinstance(own, dict) and own.get("type") == PROMETHEUS:
        override = _decode(own.get("conf"))
        if override is not None:
            config = merge(config, override)
    return config

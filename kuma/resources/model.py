"""The typed resource model: Kuma's universal form (type, mesh, name at the top, spec inline).

Structs are frozen msgspec Structs: decoding is a few microseconds, they hash and compare by
value (the engine relies on ``==`` to skip no-op updates), and encoding back omits every field
left at its default so a round trip gives the document the user wrote.

Defaults that Kuma *resolves* rather than stores (servicePort from port, addresses from
``networking.address`` ...) are exposed as ``effective_*`` helpers; the stored document keeps
exactly what the user wrote.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar, Generic, Literal, TypeVar

import msgspec

from .spec import Spec
from .zone_insight import KdsSubscription

SERVICE_TAG = "kuma.io/service"
PROTOCOL_TAG = "kuma.io/protocol"
ZONE_TAG = "kuma.io/zone"
DEFAULT_OUTBOUND_ADDRESS = "127.0.0.1"

InboundState = Literal["Ready", "NotReady", "Ignored"]
GatewayType = Literal["DELEGATED", "BUILTIN"]


_Spec = Spec


# --- Dataplane -------------------------------------------------------------------------------


class Health(_Spec, frozen=True):
    ready: bool = True


class TcpProbe(_Spec, frozen=True):
    pass


class ServiceProbe(_Spec, frozen=True):
    interval: str | None = None
    timeout: str | None = None
    unhealthy_threshold: int | None = None
    healthy_threshold: int | None = None
    tcp: TcpProbe | None = None


class Inbound(_Spec, frozen=True):
    port: int = 0
    service_port: int | None = None
    service_address: str | None = None
    address: str | None = None
    tags: dict[str, str] = msgspec.field(default_factory=dict)
    health: Health | None = None
    service_probe: ServiceProbe | None = None
    state: InboundState | None = None
    name: str | None = None

    @property
    def service(self) -> str:
        return self.tags.get(SERVICE_TAG, "")

    @property
    def protocol(self) -> str:
        """The inbound's protocol, lower-cased; absent means tcp (Kuma's rule)."""
        return self.tags.get(PROTOCOL_TAG, "tcp").lower()

    @property
    def effective_service_port(self) -> int:
        return self.service_port if self.service_port is not None else self.port

    def effective_address(self, networking: Networking) -> str:
        return self.address or networking.address

    def effective_service_address(self, networking: Networking) -> str:
        return self.service_address or self.effective_address(networking)

    def advertised_address(self, networking: Networking) -> str:
        """Where other proxies reach this inbound (Kuma: advertised, else inbound, else node)."""
        return networking.advertised_address or self.address or networking.address

    @property
    def is_healthy(self) -> bool:
        """Whether this inbound is an endpoint of its service: state Ready (or unset) and not
        ``health.ready: false``."""
        if self.state is not None and self.state != "Ready":
            return False
        return self.health is None or self.health.ready


class Outbound(_Spec, frozen=True):
    port: int = 0
    address: str | None = None
    tags: dict[str, str] = msgspec.field(default_factory=dict)

    @property
    def service(self) -> str:
        return self.tags.get(SERVICE_TAG, "")

    @property
    def effective_address(self) -> str:
        return self.address or DEFAULT_OUTBOUND_ADDRESS


class Gateway(_Spec, frozen=True):
    tags: dict[str, str] = msgspec.field(default_factory=dict)
    type: GatewayType = "DELEGATED"

    @property
    def service(self) -> str:
        return self.tags.get(SERVICE_TAG, "")


class TransparentProxying(_Spec, frozen=True):
    redirect_port_inbound: int = 0
    redirect_port_outbound: int = 0
    redirect_port_inbound_v6: int | None = None
    direct_access_services: tuple[str, ...] = ()
    reachable_services: tuple[str, ...] = ()
    ip_family_mode: str | None = None


class Admin(_Spec, frozen=True):
    port: int = 0


class Networking(_Spec, frozen=True):
    address: str = ""
    advertised_address: str | None = None
    inbound: tuple[Inbound, ...] = ()
    outbound: tuple[Outbound, ...] = ()
    gateway: Gateway | None = None
    transparent_proxying: TransparentProxying | None = None
    admin: Admin | None = None


class ProbeEndpoint(_Spec, frozen=True):
    inbound_port: int = 0
    inbound_path: str = ""
    path: str = ""


class Probes(_Spec, frozen=True):
    port: int = 0
    endpoints: tuple[ProbeEndpoint, ...] = ()


# --- zone proxies --------------------------------------------------------------------------------


class ZoneIngressNetworking(_Spec, frozen=True):
    address: str = ""
    advertised_address: str | None = None
    port: int = 0
    advertised_port: int | None = None
    admin: Admin | None = None


class AvailableService(_Spec, frozen=True):
    tags: dict[str, str] = msgspec.field(default_factory=dict)
    instances: int = 0
    mesh: str = ""
    external_service: bool = False


class ZoneEgressNetworking(_Spec, frozen=True):
    address: str = ""
    port: int = 0
    admin: Admin | None = None


# --- external services (Kuma: api/mesh/v1alpha1/externalservice.proto) -------------------------


class DataSource(_Spec, frozen=True):
    """Kuma's DataSource (api/system/v1alpha1/datasource.proto): a mesh Secret's name, a file,
    inline bytes (base64 in the document) or an inline string. Inline values are never shown by
    ``repr`` (an inline client key must not reach a log line or a failed assertion)."""

    secret: str | None = None
    file: str | None = None
    inline: bytes | None = None
    inline_string: str | None = None

    def __repr__(self) -> str:
        if self.secret is not None:
            return f"DataSource(secret={self.secret!r})"
        if self.file is not None:
            return f"DataSource(file={self.file!r})"
        return "DataSource(inline=<redacted>)"

    __str__ = __repr__


class ExternalServiceTls(_Spec, frozen=True):
    enabled: bool = False
    ca_cert: DataSource | None = None
    client_cert: DataSource | None = None
    client_key: DataSource | None = None
    allow_renegotiation: bool | None = None
    server_name: str | None = None
    skip_hostname_verification: bool | None = None


class ExternalServiceNetworking(_Spec, frozen=True):
    #: ``host:port``; host an IP or a DNS name.
    address: str = ""
    tls: ExternalServiceTls | None = None
    disable_host_dns_entry: bool = msgspec.field(default=False, name="disableHostDNSEntry")


# --- top-level resources -----------------------------------------------------------------------


class _Resource(
    msgspec.Struct,
    frozen=True,
    forbid_unknown_fields=True,
    omit_defaults=True,
    rename="camel",
    kw_only=True,
    tag_field="type",
):
    """A top-level resource. ``type`` is the msgspec tag; ``name`` identifies it."""

    name: str
    #: Kuma's resource labels (``labels:`` beside ``name``). Kept as written; the control plane
    #: marks Dataplanes registered by kuma-dp with ``kuma.io/dp-registration``.
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    #: True for resources that live inside a mesh (Dataplane); False for global ones.
    MESH_SCOPED: ClassVar[bool] = False
    TYPE: ClassVar[str] = ""

    @property
    def mesh_name(self) -> str:
        """The mesh this resource belongs to; empty for global resources."""
        return ""


class Mesh(_Resource, tag="Mesh", frozen=True):
    # The mesh-wide policies of Kuma's Mesh (mtls, logging, ...) are kept as opaque documents:
    # they survive a round trip and are validated for shape only where this project uses them.
    mtls: dict[str, Any] | None = None
    logging: dict[str, Any] | None = None
    tracing: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    networking: dict[str, Any] | None = None
    routing: dict[str, Any] | None = None
    constraints: dict[str, Any] | None = None
    mesh_services: dict[str, Any] | None = None
    skip_creating_initial_policies: tuple[str, ...] = ()
    TYPE: ClassVar[str] = "Mesh"


class Dataplane(_Resource, tag="Dataplane", frozen=True):
    mesh: str = "default"
    networking: Networking | None = None
    probes: Probes | None = None
    metrics: dict[str, Any] | None = None
    MESH_SCOPED: ClassVar[bool] = True
    TYPE: ClassVar[str] = "Dataplane"

    @property
    def mesh_name(self) -> str:
        return self.mesh

    @property
    def is_gateway(self) -> bool:
        return self.networking is not None and self.networking.gateway is not None

    @property
    def is_transparent(self) -> bool:
        """Kuma's IsUsingTransparentProxy: both redirect ports set."""
        if self.networking is None or self.networking.transparent_proxying is None:
            return False
        tp = self.networking.transparent_proxying
        return tp.redirect_port_inbound != 0 and tp.redirect_port_outbound != 0

    @property
    def services(self) -> tuple[str, ...]:
        """The services this proxy provides (inbounds, or the gateway's service)."""
        if self.networking is None:
            return ()
        if self.networking.gateway is not None:
            return (self.networking.gateway.service,)
        return tuple(dict.fromkeys(i.service for i in self.networking.inbound))


class ZoneIngress(_Resource, tag="ZoneIngress", frozen=True):
    zone: str = ""
    networking: ZoneIngressNetworking | None = None
    available_services: tuple[AvailableService, ...] = ()
    TYPE: ClassVar[str] = "ZoneIngress"


class ZoneEgress(_Resource, tag="ZoneEgress", frozen=True):
    zone: str = ""
    networking: ZoneEgressNetworking | None = None
    TYPE: ClassVar[str] = "ZoneEgress"


class Zone(_Resource, tag="Zone", frozen=True):
    """A zone as global knows it (Kuma's system Zone): created when the zone first connects
    over KDS; ``enabled: false`` refuses its KDS streams (kuma/kds/zone_status.py)."""

    enabled: bool | None = None
    TYPE: ClassVar[str] = "Zone"

    @property
    def is_enabled(self) -> bool:
        """Kuma's IsEnabled: unset means enabled."""
        return self.enabled is not False


class ZoneInsight(_Resource, tag="ZoneInsight", frozen=True):
    """A zone's KDS subscriptions, named after its Zone; written by global's KDS server."""

    subscriptions: tuple[KdsSubscription, ...] = ()
    TYPE: ClassVar[str] = "ZoneInsight"

    @property
    def online(self) -> bool:
        return any(s.online for s in self.subscriptions)


class ExternalService(_Resource, tag="ExternalService", frozen=True):
    """A service outside the mesh that its proxies reach by ``kuma.io/service`` (Kuma's
    ExternalService; served as in Kuma without zone egress: kuma/xds/generate/external.py)."""

    mesh: str = "default"
    networking: ExternalServiceNetworking | None = None
    tags: dict[str, str] = msgspec.field(default_factory=dict)
    MESH_SCOPED: ClassVar[bool] = True
    TYPE: ClassVar[str] = "ExternalService"

    @property
    def mesh_name(self) -> str:
        return self.mesh

    @property
    def service(self) -> str:
        return self.tags.get(SERVICE_TAG, "")

    @property
    def holds_private_key(self) -> bool:
        """Its client key is inline (not a Secret's name): stored like a Secret (0600)."""
        tls = self.networking.tls if self.networking is not None else None
        key = tls.client_key if tls is not None else None
        return key is not None and bool(key.inline or key.inline_string)


class Selector(_Spec, frozen=True):
    match: dict[str, str] = msgspec.field(default_factory=dict)


# Kuma: api/mesh/v1alpha1/gateway.proto. Absent fields are Kuma's zero values (NONE, 0, false);
# an unknown enum value is a decode error naming the field, as Kuma's protobuf decoder refuses it.
GatewayTlsMode = Literal["NONE", "TERMINATE", "PASSTHROUGH"]
GatewayProtocol = Literal["NONE", "TCP", "TLS", "HTTP", "HTTPS"]


class GatewayTls(_Spec, frozen=True):
    mode: GatewayTlsMode = "NONE"
    certificates: tuple[DataSource, ...] = ()
    options: dict[str, Any] | None = None


class GatewayListenerResources(_Spec, frozen=True):
    connection_limit: int = 0


class GatewayListener(_Spec, frozen=True):
    hostname: str = ""
    port: int = 0
    protocol: GatewayProtocol = "NONE"
    tls: GatewayTls | None = None
    tags: dict[str, str] = msgspec.field(default_factory=dict)
    cross_mesh: bool = msgspec.field(default=False, name="crossMesh")
    resources: GatewayListenerResources | None = None

    @property
    def effective_hostname(self) -> str:
        """Kuma's GetNonEmptyHostname: no hostname matches every host."""
        return self.hostname or "*"


class GatewayConf(_Spec, frozen=True):
    listeners: tuple[GatewayListener, ...] = ()


class MeshGateway(_Resource, tag="MeshGateway", frozen=True):
    """Kuma's builtin gateway: which gateway Dataplanes (selectors) listen how (listeners);
    served by kuma/xds/gateway."""

    mesh: str = "default"
    selectors: tuple[Selector, ...] | None = None
    tags: dict[str, str] | None = None
    conf: GatewayConf | None = None
    MESH_SCOPED: ClassVar[bool] = True
    TYPE: ClassVar[str] = "MeshGateway"

    @property
    def mesh_name(self) -> str:
        return self.mesh


class MeshVips(_Resource, tag="MeshVips", frozen=True):
    """The virtual IPs of one mesh's services for transparent proxying (Kuma keeps the same
    list in the Config ``kuma-<mesh>-dns-vips``). Global, named after its mesh; written by
    the control plane's VIP allocator (kuma/cp/vips.py), read by the engine."""

    #: service (``kuma.io/service`` value) → IPv4 address in 240.0.0.0/4.
    vips: dict[str, str] = msgspec.field(default_factory=dict)
    #: ExternalService host name → its own VIP (Kuma's host entries, for the DNS name of an
    #: ExternalService without ``disableHostDNSEntry``).
    hosts: dict[str, str] = msgspec.field(default_factory=dict)
    TYPE: ClassVar[str] = "MeshVips"


class _SecretData(_Resource, frozen=True):
    """What Secret and GlobalSecret share: ``data``, the value as base64 (Kuma's universal
    form). The value is never shown by ``repr``: a secret that reaches a log line, a failed
    assertion or a traceback shows its name only."""

    data: str = ""

    @property
    def value(self) -> bytes:
        """The decoded value (validation guarantees ``data`` is base64)."""
        return base64.b64decode(self.data, validate=True)

    def __repr__(self) -> str:
        mesh = f"mesh={self.mesh_name!r}, " if self.MESH_SCOPED else ""
        return f"{self.TYPE}({mesh}name={self.name!r}, data=<redacted>)"

    __str__ = __repr__


class Secret(_SecretData, tag="Secret", frozen=True):
    """A mesh's secret (Kuma: dataplane-token signing keys, the builtin CA's certificate and
    key). Only admins read it through the API; tables never show its value."""

    mesh: str = "default"
    MESH_SCOPED: ClassVar[bool] = True
    TYPE: ClassVar[str] = "Secret"

    @property
    def mesh_name(self) -> str:
        return self.mesh


class GlobalSecret(_SecretData, tag="GlobalSecret", frozen=True):
    """A secret outside any mesh (zone-token signing keys, the control plane's TLS
    certificate)."""

    TYPE: ClassVar[str] = "GlobalSecret"


# --- targetRef policies (the registry of kinds is kuma/resources/policy.py) -------------------

TargetRefKind = Literal[
    "Mesh", "MeshSubset", "MeshGateway", "MeshService", "MeshServiceSubset", "MeshHTTPRoute"
]
ProxyType = Literal["Sidecar", "Gateway"]

MESH: TargetRefKind = "Mesh"
MESH_SUBSET: TargetRefKind = "MeshSubset"
MESH_GATEWAY: TargetRefKind = "MeshGateway"
MESH_SERVICE: TargetRefKind = "MeshService"
MESH_SERVICE_SUBSET: TargetRefKind = "MeshServiceSubset"
MESH_HTTP_ROUTE: TargetRefKind = "MeshHTTPRoute"

#: Kuma's specificity order of targetRef kinds (api/common/v1alpha1/ref.go): a policy with a
#: more specific top-level kind is merged later, so it wins.
KIND_ORDER: Mapping[str, int] = {
    MESH: 1,
    MESH_SUBSET: 2,
    MESH_GATEWAY: 3,
    MESH_SERVICE: 4,
    MESH_SERVICE_SUBSET: 5,
    MESH_HTTP_ROUTE: 6,
}


class PolicyConf(_Spec, frozen=True):
    """Base of each policy kind's ``default`` (camelCase keys, unknown keys rejected)."""


class TargetRef(_Spec, frozen=True):
    # ``kind`` is a plain string (not the Literal) so that an unknown kind reaches validation
    # and gets Kuma's message ("value is not supported") instead of a decode error.
    kind: str = ""
    name: str = ""
    tags: dict[str, str] = msgspec.field(default_factory=dict)
    mesh: str = ""
    proxy_types: tuple[str, ...] = ()


ConfT = TypeVar("ConfT")


class PolicyItem(_Spec, Generic[ConfT], frozen=True):
    """One ``to`` or ``from`` entry: where it applies and its configuration."""

    target_ref: TargetRef = msgspec.field(default_factory=TargetRef)
    default: ConfT | None = None


class PolicySpec(_Spec, Generic[ConfT], frozen=True):
    target_ref: TargetRef = msgspec.field(default_factory=TargetRef)
    to: tuple[PolicyItem[ConfT], ...] = ()
    from_: tuple[PolicyItem[ConfT], ...] = msgspec.field(default=(), name="from")


class Policy(_Resource, frozen=True):
    """Base of every policy kind's resource class. Subclasses set ``TYPE``, the msgspec tag
    (the same string) and ``spec``'s type."""

    mesh: str = "default"
    spec: PolicySpec[Any] = msgspec.field(default_factory=PolicySpec)
    MESH_SCOPED: ClassVar[bool] = True

    @property
    def mesh_name(self) -> str:
        return self.mesh


#: The types msgspec decodes as one tagged union; policy kinds are decoded by their own class.
CoreResource = (
    Mesh
    | Dataplane
    | ZoneIngress
    | ZoneEgress
    | MeshVips
    | Secret
    | GlobalSecret
    | ExternalService
    | Zone
    | ZoneInsight
    | MeshGateway
)
Resource = CoreResource | Policy
RESOURCE_TYPES: dict[str, type[Resource]] = {
    cls.TYPE: cls
    for cls in (
        Mesh,
        Dataplane,
        ZoneIngress,
        ZoneEgress,
        MeshVips,
        Secret,
        GlobalSecret,
        ExternalService,
        Zone,
        ZoneInsight,
        MeshGateway,
    )
}
ResourceTypeName = Literal[
    "Mesh",
    "Dataplane",
    "ZoneIngress",
    "ZoneEgress",
    "MeshVips",
    "Secret",
    "GlobalSecret",
    "ExternalService",
    "Zone",
    "ZoneInsight",
    "MeshGateway",
]
#: The types whose content is secret: admin-only in the API, mode 0600 on disk, never logged.
SECRET_TYPES = frozenset({Secret.TYPE, GlobalSecret.TYPE})


class ResourceKey(msgspec.Struct, frozen=True, order=True):
    """Identity of a resource in a store. ``mesh`` is empty for global resources."""

    type: str
    mesh: str
    name: str

    @classmethod
    def of(cls, resource: Resource) -> ResourceKey:
        return cls(resource.TYPE, resource.mesh_name, resource.name)

    def __str__(self) -> str:
        return f"{self.type} {self.mesh}/{self.name}" if self.mesh else f"{self.type} {self.name}"


class ResourceMeta(msgspec.Struct, frozen=True):
    """What a store keeps beside the spec. ``version`` is opaque and changes on every write."""

    version: str
    creation_time: datetime
    modification_time: datetime


class StoredResource(msgspec.Struct, frozen=True):
    """A resource as a store holds it: the spec plus its meta."""

    resource: Resource
    meta: ResourceMeta

    @property
    def key(self) -> ResourceKey:
        return ResourceKey.of(self.resource)

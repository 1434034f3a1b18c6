"""Pure generation of Envoy v3 resources (protobuf messages) for Kuma proxies.

No I/O and no asyncio: every builder is a function of small inputs returning a message, so the
engine can build a shared resource (a service's cluster and endpoints, a transparent-proxy
outbound) once and serialize it once for every proxy that uses it.
"""

from __future__ import annotations

from . import names, types
from .admin import admin_cluster, admin_listener, admin_port, admin_resources
from .clusters import (
    inbound_cluster,
    inbound_passthrough_cluster,
    outbound_passthrough_cluster,
    service_cluster,
)
from .destination import Destination, destination_cluster_name, destination_load_assignment
from .endpoints import Endpoint, endpoints_of, load_assignment, service_protocol
from .listeners import (
    inbound_listener,
    inbound_redirect_listener,
    outbound_listener,
    outbound_redirect_listener,
)
from .protocol import common_protocol, infer_protocol, parse_protocol
from .proxy import (
    DEFAULT_VIP_PORT,
    MeshView,
    OutboundPart,
    ProxyParts,
    Resources,
    generate_proxy,
    mesh_allows_passthrough,
    outbounds_of,
    proxy_parts,
    type_url_of,
)
from .view import StaticMeshView, services_of

__all__ = [
    "DEFAULT_VIP_PORT",
    "Destination",
    "Endpoint",
    "MeshView",
    "OutboundPart",
    "ProxyParts",
    "Resources",
    "StaticMeshView",
    "admin_cluster",
    "admin_listener",
    "admin_port",
    "admin_resources",
    "common_protocol",
    "destination_cluster_name",
    "destination_load_assignment",
    "endpoints_of",
    "generate_proxy",
    "inbound_cluster",
    "inbound_listener",
    "inbound_passthrough_cluster",
    "inbound_redirect_listener",
    "infer_protocol",
    "load_assignment",
    "mesh_allows_passthrough",
    "names",
    "outbound_listener",
    "outbound_passthrough_cluster",
    "outbound_redirect_listener",
    "outbounds_of",
    "parse_protocol",
    "proxy_parts",
    "service_cluster",
    "service_protocol",
    "services_of",
    "type_url_of",
    "types",
]

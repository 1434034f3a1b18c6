"""The resource room: the typed model, its YAML/JSON codec and Kuma's validation rules."""

from __future__ import annotations

from .codec import decode, decode_one, encode_json, encode_yaml, from_document, to_document
from .errors import DecodeError, ResourceError, ValidationError, Violation
from .model import (
    PROTOCOL_TAG,
    RESOURCE_TYPES,
    SECRET_TYPES,
    SERVICE_TAG,
    ZONE_TAG,
    Dataplane,
    ExternalService,
    GlobalSecret,
    Inbound,
    Mesh,
    MeshGateway,
    MeshVips,
    Networking,
    Outbound,
    Resource,
    ResourceKey,
    ResourceMeta,
    Secret,
    StoredResource,
    Zone,
    ZoneEgress,
    ZoneIngress,
    ZoneInsight,
)
from .validation import check, validate

__all__ = [
    "PROTOCOL_TAG",
    "RESOURCE_TYPES",
    "SECRET_TYPES",
    "SERVICE_TAG",
    "ZONE_TAG",
    "Dataplane",
    "DecodeError",
    "ExternalService",
    "GlobalSecret",
    "Inbound",
    "Mesh",
    "MeshGateway",
    "MeshVips",
    "Networking",
    "Outbound",
    "Resource",
    "ResourceError",
    "ResourceKey",
    "ResourceMeta",
    "Secret",
    "StoredResource",
    "ValidationError",
    "Violation",
    "Zone",
    "ZoneEgress",
    "ZoneIngress",
    "ZoneInsight",
    "check",
    "decode",
    "decode_one",
    "encode_json",
    "encode_yaml",
    "from_document",
    "to_document",
    "validate",
]

# Last: the policy kinds register themselves into this package's tables (RESOURCE_TYPES,
# policy.POLICY_KINDS); they import only submodules of this package, already loaded above.
import kuma.policies  # noqa: F401

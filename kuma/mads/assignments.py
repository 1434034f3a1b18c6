"""One Dataplane's MonitoringAssignment, as Kuma's v1 generator builds it
(``pkg/mads/v1/generator/assignments.go``, ``pkg/mads/util.go``).

Kuma makes one assignment per Dataplane whose mesh has prometheus metrics enabled, named
``/meshes/<mesh>/dataplanes/<name>``: ``service`` is the Dataplane's identifying service (the
alphabetically first ``kuma.io/service`` of its tags, ``unknown`` without one) and its one
target is ``<advertisedAddress or address>:<port>`` with the merged (Mesh, then Dataplane)
backend's path, scheme ``https`` for ``providedTLS`` and ``http`` otherwise (under
``activeMTLSBackend`` the endpoint also answers plain HTTP from the proxy's own address, and
Prometheus is expected to scrape through its own sidecar), and labels from the tags: per tag
its first value and, under the tag's plural, all values as ``,a,b,``, names sanitized to
``[a-zA-Z0-9_]``. A builtin gateway gets ``kuma_io_mesh_gateway`` with its MeshGateway's name;
no MeshGateway resource exists here, so it is empty, as Kuma's when none selects the proxy.

The document is the protobuf JSON Kuma writes (``jsonpb`` with the proto field names; empty
fields left out) inside a ``google.protobuf.Any``.
"""

from __future__ import annotations

import re
from typing import Any

from kuma.policies.caller_tags import tag_set as dataplane_tags
from kuma.resources import Dataplane, Mesh
from kuma.resources.metrics import PROVIDED_TLS, prometheus_config
from kuma.resources.model import SERVICE_TAG

TYPE_URL = "type.googleapis.com/kuma.observability.v1.MonitoringAssignment"
#: Kuma's ``ServiceUnknown``: the service of a Dataplane without a ``kuma.io/service`` tag.
UNKNOWN_SERVICE = "unknown"
MESH_GATEWAY_LABEL = "kuma_io_mesh_gateway"

_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")


def assignment_name(dataplane: Dataplane) -> str:
    return f"/meshes/{dataplane.mesh}/dataplanes/{dataplane.name}"


def tag_set(dataplane: Dataplane) -> dict[str, list[str]]:
    """Kuma's ``TagSet`` as its label code walks it: keys sorted, each key's values sorted."""
    return {key: sorted(values) for key, values in sorted(dataplane_tags(dataplane).items())}


def identifying_service(tags: dict[str, list[str]]) -> str:
    services = tags.get(SERVICE_TAG)
    return services[0] if services else UNKNOWN_SERVICE


def _label_name(name: str) -> str:
    return _INVALID_LABEL_CHARS.sub("_", name)


def dataplane_labels(dataplane: Dataplane, tags: dict[str, list[str]]) -> dict[str, str]:
    """Kuma's ``DataplaneLabels``. Keys are visited in order, so a user's own plural tag
    (``versions``) overrides the plural made from ``version``, as in Kuma."""
    labels: dict[str, str] = {}
    for key, values in tags.items():
        labels[_label_name(key)] = values[0] if values else ""
        labels[_label_name(key + "s")] = "," + ",".join(values) + ","
    networking = dataplane.networking
    gateway = networking.gateway if networking is not None else None
    if gateway is not None and gateway.type == "BUILTIN":
        labels[MESH_GATEWAY_LABEL] = ""
    return labels


def _join_host_port(host: str, port: int) -> str:
    """Go's ``net.JoinHostPort``: brackets around a host holding a colon (IPv6)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def monitoring_assignment(mesh: Mesh | None, dataplane: Dataplane) -> dict[str, Any] | None:
    """The assignment as an ``Any`` document, or None when the Dataplane is not scraped (its
    mesh is absent or has no prometheus backend enabled)."""
    config = prometheus_config(mesh, dataplane)
    if config is None:
        return None
    networking = dataplane.networking
    host = ""
    if networking is not None:
        host = networking.advertised_address or networking.address
    tags = tag_set(dataplane)
    target: dict[str, Any] = {
        "name": dataplane.name,
        "scheme": "https" if config.tls_mode == PROVIDED_TLS else "http",
        "address": _join_host_port(host, config.port),
    }
    if config.path:
        target["metrics_path"] = config.path
    labels = dataplane_labels(dataplane, tags)
    if labels:
        target["labels"] = labels
    return {
        "@type": TYPE_URL,
        "mesh": dataplane.mesh,
        "service": identifying_service(tags),
        "targets": [target],
    }

"""What the gateway tests share: store events for the engine, and a mesh with a builtin
gateway Dataplane (edge-1, service edge) and two HTTP services (web-1, api-1)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from kuma.resources import Resource, ResourceMeta
from kuma.store import Operation, ResourceEvent

_META = ResourceMeta("1", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))

BASE = """\
type: Mesh
name: default
---
type: Dataplane
mesh: default
name: edge-1
networking:
  address: 10.0.0.1
  gateway: {type: BUILTIN, tags: {kuma.io/service: edge}}
---
type: Dataplane
mesh: default
name: web-1
networking:
  address: 10.0.0.2
  inbound: [{port: 8080, tags: {kuma.io/service: web, kuma.io/protocol: http}}]
---
type: Dataplane
mesh: default
name: api-1
networking:
  address: 10.0.0.3
  inbound: [{port: 8080, tags: {kuma.io/service: api, kuma.io/protocol: http}}]
"""
GATEWAY = """\
type: MeshGateway
mesh: default
name: edge
selectors: [{match: {kuma.io/service: edge}}]
conf: {listeners: [{protocol: HTTP, port: 8000}]}
"""
#: A MeshHTTPRoute on the gateway ``edge``, up to its rules (a test appends them).
ROUTE_HEAD = """\
type: MeshHTTPRoute
mesh: default
name: edge-routes
spec:
  targetRef: {kind: MeshGateway, name: edge}
  to:
    - targetRef: {kind: Mesh}
      rules:
"""


def events(
    resources: Iterable[Resource], operation: Operation = Operation.CREATE
) -> list[ResourceEvent]:
    return [ResourceEvent(operation, r, _META, 1) for r in resources]

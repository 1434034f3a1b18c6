"""Kuma's targetRef policies: one module per kind (schema, validation, Envoy change) on the
shared mechanism (``rules``: Kuma's rules and merging; ``matching``: which policies select a
proxy and in which order; ``plugin``: how a kind changes Envoy resources).

Importing this package registers every kind (``kuma.resources`` does it when it is imported).
To add a kind: write ``kuma/policies/<kind>.py`` on the pattern of ``meshtimeout.py`` and
import it below.
"""

from __future__ import annotations

from . import (
    accesslog_gateway,
    loadbalancing_gateway,
    meshaccesslog,
    meshcircuitbreaker,
    meshfaultinjection,
    meshhealthcheck,
    meshhttproute,
    meshloadbalancingstrategy,
    meshratelimit,
    meshretry,
    meshtcproute,
    meshtimeout,
    meshtrafficpermission,
    retry_gateway,
)
from .defaults import default_policies
from .matching import EMPTY, KindPolicies, ProxyPolicies, resolve
from .plugin import (
    PLUGINS,
    OutboundFingerprint,
    apply_inbound,
    apply_outbound_cluster,
    apply_outbound_listener,
    apply_passthrough,
    outbound_fingerprint,
    outbound_fingerprints,
    own_clusters,
    plan_outbound,
)
from .selection import selects

__all__ = [
    "EMPTY",
    "PLUGINS",
    "KindPolicies",
    "OutboundFingerprint",
    "ProxyPolicies",
    "accesslog_gateway",
    "apply_inbound",
    "apply_outbound_cluster",
    "apply_outbound_listener",
    "apply_passthrough",
    "default_policies",
    "loadbalancing_gateway",
    "meshaccesslog",
    "meshcircuitbreaker",
    "meshfaultinjection",
    "meshhealthcheck",
    "meshhttproute",
    "meshloadbalancingstrategy",
    "meshratelimit",
    "meshretry",
    "meshtcproute",
    "meshtimeout",
    "meshtrafficpermission",
    "outbound_fingerprint",
    "outbound_fingerprints",
    "own_clusters",
    "plan_outbound",
    "resolve",
    "retry_gateway",
    "selects",
]

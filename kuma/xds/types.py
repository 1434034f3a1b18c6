"""Envoy v3 resource type URLs and the order in which they are sent."""

from __future__ import annotations

_PREFIX = "type.googleapis.com/"

CLUSTER = _PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = _PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = _PREFIX + "envoy.config.route.v3.RouteConfiguration"
SECRET = _PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"

#: Make before break: clusters before their endpoints before the listeners (and routes) that
#: use them. Removals go in the reverse order (listeners first, then what they referenced).
SEND_ORDER: tuple[str, ...] = (CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET)

#: Short names for logs and insight counters (Kuma's ``cds``, ``eds``, ``lds``, ``rds``).
SHORT_NAMES: dict[str, str] = {
    CLUSTER: "cds",
    ENDPOINT: "eds",
    LISTENER: "lds",
    ROUTE: "rds",
    SECRET: "sds",
}

"""Virtual probes: the ``probe:listener`` of a Dataplane with ``probes`` (Kuma v2.7:
``pkg/xds/generator/probe_generator.go``, goldens in ``testdata/probe``).

A health checker that cannot reach the application directly (or should not need to know its
port) asks the proxy: ``GET <probes.port><path>``. Each endpoint maps its ``path`` to the
application's ``inboundPath`` on ``inboundPort``:

* when an inbound's application listens on ``inboundPort`` (its servicePort), the request is
  routed to that inbound's ``localhost:<inboundPort>`` cluster with the path rewritten;
* otherwise there is no cluster to use, and the answer is a redirect to ``inboundPort`` and
  ``inboundPath`` (the checker follows it, as kubelet does).

Only GET matches; only the path part of each URL is used (a query is dropped, as Kuma does).
The listener listens on ``networking.address`` (without binding its own socket under
transparent proxying, like every inbound listener).
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from kuma.resources.model import Dataplane

from ._pb import INTERNAL_ADDRESSES, ROUTER, add_hcm, set_socket_address
from .dataplane import is_transparent
from .names import local_cluster_name, sanitize_metric

PROBE_LISTENER = "probe:listener"
PROBE_ROUTE_CONFIGURATION = "probe:route_configuration"
PROBE_VIRTUAL_HOST = "probe"


def _path(url: str) -> str:
    """Go's ``url.Parse(url).Path``: the decoded path, without query or fragment."""
    return unquote(urlsplit(url).path)


def _only_get(route: route_components_pb2.Route) -> None:
    header = route.match.headers.add(name=":method")
    header.string_match.exact = "GET"


def probe_listener(dataplane: Dataplane) -> listener_pb2.Listener | None:
    """The virtual probe listener, or None when the Dataplane has no ``probes``."""
    probes = dataplane.probes
    networking = dataplane.networking
    if probes is None or networking is None:
        return None
    application_ports = {inbound.effective_service_port for inbound in networking.inbound}
    config = hcm_pb2.HttpConnectionManager(stat_prefix=sanitize_metric(PROBE_LISTENER))
    config.http_filters.append(ROUTER)
    config.internal_address_config.CopyFrom(INTERNAL_ADDRESSES)
    config.route_config.name = PROBE_ROUTE_CONFIGURATION
    host = config.route_config.virtual_hosts.add(name=PROBE_VIRTUAL_HOST, domains=["*"])
    for endpoint in probes.endpoints:
        route = host.routes.add()
        route.match.path = _path(endpoint.path)
        _only_get(route)
        target = _path(endpoint.inbound_path)
        if endpoint.inbound_port in application_ports:
            route.route.cluster = local_cluster_name(endpoint.inbound_port)
            rewrite = route.route.regex_rewrite
            rewrite.pattern.regex = ".*"
            rewrite.substitution = target
        else:
            route.redirect.port_redirect = endpoint.inbound_port
            route.redirect.path_redirect = target
    listener = listener_pb2.Listener(name=PROBE_LISTENER, traffic_direction=base_pb2.INBOUND)
    set_socket_address(listener.address, networking.address, probes.port)
    listener.enable_reuse_port.value = False
    if is_transparent(dataplane):
        listener.bind_to_port.value = False
    add_hcm(listener.filter_chains.add(), config)
    return listener

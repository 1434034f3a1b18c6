"""The xDS (ADS) server: delta and state-of-the-world streams fed by a ``ConfigSource``.

The engine is reached only through :class:`kuma.xds.source.ConfigSource`; insights and metrics
follow the streams through a :class:`StreamObserver`.
"""

from __future__ import annotations

from .lifecycle import StreamLifecycle
from .node import InvalidRequest, ProxyId, parse_node_id, parse_proxy_id
from .observer import NoopObserver, StreamObserver
from .server import AdsServer, serve
from .service import AggregatedDiscoveryServiceBase, AggregatedDiscoveryServiceStub

__all__ = [
    "AdsServer",
    "AggregatedDiscoveryServiceBase",
    "AggregatedDiscoveryServiceStub",
    "InvalidRequest",
    "NoopObserver",
    "ProxyId",
    "StreamLifecycle",
    "StreamObserver",
    "parse_node_id",
    "parse_proxy_id",
    "serve",
]

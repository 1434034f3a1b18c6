"""The incremental diff engine (see engine.py) and the pieces it is built from that other
config sources may reuse (kuma-load's baseline does): the inputs, the proxy index, the
watched proxies."""

from __future__ import annotations

from kuma.xds.node_id import parse_node_id

from .engine import BatchStats, Engine
from .inputs import EngineInputs
from .invalidation import Invalidation
from .proxy_index import ProxyIndex
from .watches import ProxyRecord, ProxyResources, ProxyWatches, Subscription

__all__ = [
    "BatchStats",
    "Engine",
    "EngineInputs",
    "Invalidation",
    "ProxyIndex",
    "ProxyRecord",
    "ProxyResources",
    "ProxyWatches",
    "Subscription",
    "parse_node_id",
]

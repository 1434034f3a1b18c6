"""The incremental diff engine (see engine.py)."""

from __future__ import annotations

from kuma.xds.node_id import parse_node_id

from .engine import BatchStats, Engine

__all__ = ["BatchStats", "Engine", "parse_node_id"]

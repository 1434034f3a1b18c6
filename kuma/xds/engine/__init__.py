"""The incremental diff engine (see engine.py)."""

from __future__ import annotations

from .engine import BatchStats, Engine, parse_node_id

__all__ = ["BatchStats", "Engine", "parse_node_id"]

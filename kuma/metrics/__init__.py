"""Prometheus metrics of the control plane (a registry of their own), served on ``/metrics``.

See :mod:`.metrics` for the series and where each is fed from.
"""

from __future__ import annotations

from .http import PATH, metrics_routes
from .metrics import CONTENT_TYPE, Metrics
from .store import InstrumentedStore

__all__ = ["CONTENT_TYPE", "PATH", "InstrumentedStore", "Metrics", "metrics_routes"]

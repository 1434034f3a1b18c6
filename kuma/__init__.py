"""kuma-py: an event-driven control plane for the Kuma service mesh (universal mode)."""

from __future__ import annotations

__version__ = "0.1.0"

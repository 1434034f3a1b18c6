"""The type URLs, re-exported for generation code: they live in :mod:`kuma.xds.types` so that
the protocol servers need nothing from ``kuma.xds.generate``."""

from __future__ import annotations

from kuma.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET, SEND_ORDER, SHORT_NAMES

__all__ = ["CLUSTER", "ENDPOINT", "LISTENER", "ROUTE", "SECRET", "SEND_ORDER", "SHORT_NAMES"]

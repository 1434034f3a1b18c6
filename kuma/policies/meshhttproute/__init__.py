"""MeshHTTPRoute (Kuma ``pkg/plugins/policies/meshhttproute``): schema and validation
(``api``), Kuma's merging and ordering of rules (``order``), the Envoy routes (``envoy``)."""

from __future__ import annotations

from . import api, envoy
from .api import KIND, MeshHTTPRoute

__all__ = ["KIND", "MeshHTTPRoute", "api", "envoy"]

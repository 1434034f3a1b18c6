"""Fixtures of the integration tests: real kuma-cp, real Envoys, real HTTP services."""

from __future__ import annotations

from tests.fixtures.envoy import control_plane, envoy_factory, http_services
from tests.fixtures.otlp import otlp_collector

__all__ = ["control_plane", "envoy_factory", "http_services", "otlp_collector"]

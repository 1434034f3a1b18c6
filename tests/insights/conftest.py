"""Fixtures of the insight tests: real Envoys for test_insights_envoy.py."""

from __future__ import annotations

from tests.fixtures.envoy import envoy_factory

__all__ = ["envoy_factory"]

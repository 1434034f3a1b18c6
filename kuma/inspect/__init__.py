"""What the control plane serves a proxy, read back for people: ``GET
/meshes/{mesh}/dataplanes/{name}/_config`` on the REST API (Kuma's path and shape)."""

from __future__ import annotations

from .served import REDACTED, served_config, served_config_routes

__all__ = ["REDACTED", "served_config", "served_config_routes"]

"""kumactl: the command line of the control plane's REST API (apply, get, inspect, delete)."""

from __future__ import annotations

"""The ``--every-policy`` set: one mesh-wide policy of each kind that shapes a sidecar's own
configuration, beyond Kuma's defaults, plus a Prometheus metrics backend on the Mesh.

Why: each capability must keep the 10,000-sidecar figures with the feature switched on. A
mesh-wide policy is the costly case (every proxy carries it, so every proxy's Listeners and
Clusters are larger), while a narrow one costs only what it selects. The values are chosen so
nothing changes traffic on real Envoys (an abort at 0 %, a rate limit no load reaches), but
every proxy's config carries each kind's filters, cluster settings and the metrics listener.
"""

from __future__ import annotations

from typing import Any

#: The Mesh's metrics backend the set enables (``Mesh.metrics``).
METRICS_BACKEND = "prometheus-1"
METRICS_PORT = 5670


def metrics_section() -> dict[str, Any]:
    """``Mesh.metrics``: a Prometheus backend every sidecar serves (Kuma's default port)."""
    return {
        "enabledBackend": METRICS_BACKEND,
        "backends": [
            {
                "name": METRICS_BACKEND,
                "type": "prometheus",
                "conf": {"port": METRICS_PORT, "path": "/metrics"},
            }
        ],
    }


def _policy(kind: str, mesh: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "mesh": mesh, "name": f"load-every-{kind.lower()}", "spec": spec}


_MESH = {"kind": "Mesh"}
#: Kuma refuses ``from`` under a top-level Mesh that may include gateways: sidecars only.
_SIDECARS = {"kind": "Mesh", "proxyTypes": ["Sidecar"]}


def every_policy_documents(mesh: str) -> list[dict[str, Any]]:
    """One mesh-wide policy of each kind (``to`` rules on outbounds, ``from`` on inbounds)."""
    return [
        _policy(
            "MeshAccessLog",
            mesh,
            {
                "targetRef": _MESH,
                "to": [
                    {
                        "targetRef": _MESH,
                        "default": {"backends": [{"type": "File", "file": {"path": "/dev/null"}}]},
                    }
                ],
            },
        ),
        _policy(
            "MeshFaultInjection",
            mesh,
            {
                "targetRef": _SIDECARS,
                "from": [
                    {
                        "targetRef": _MESH,
                        "default": {"http": [{"abort": {"httpStatus": 503, "percentage": 0}}]},
                    }
                ],
            },
        ),
        _policy(
            "MeshRateLimit",
            mesh,
            {
                "targetRef": _SIDECARS,
                "from": [
                    {
                        "targetRef": _MESH,
                        "default": {
                            "local": {
                                "http": {"requestRate": {"num": 100000, "interval": "1s"}},
                                "tcp": {"connectionRate": {"num": 100000, "interval": "1s"}},
                            }
                        },
                    }
                ],
            },
        ),
        _policy(
            "MeshHealthCheck",
            mesh,
            {
                "targetRef": _MESH,
                "to": [
                    {
                        "targetRef": _MESH,
                        "default": {
                            "interval": "10s",
                            "timeout": "2s",
                            "unhealthyThreshold": 3,
                            "healthyThreshold": 1,
                            # Kuma picks the check by the service's protocol (http here).
                            "http": {"path": "/health"},
                            "tcp": {},
                        },
                    }
                ],
            },
        ),
        _policy(
            "MeshLoadBalancingStrategy",
            mesh,
            {
                "targetRef": _MESH,
                "to": [
                    {
                        "targetRef": _MESH,
                        "default": {"loadBalancer": {"type": "LeastRequest"}},
                    }
                ],
            },
        ),
    ]

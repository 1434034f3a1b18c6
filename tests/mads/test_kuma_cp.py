"""kuma-cp serves MADS: the port announced as ``mads_port``, the assignments following what
is applied through the API, and ``monitoringAssignmentServer.tlsEnabled`` serving it over TLS
with kuma-cp's certificate (the one proxies trust, ``<workDir>/kuma-cp.crt``)."""

from __future__ import annotations

import http.client
import json
import re
import ssl
import urllib.request
from typing import Any

import pytest

from kuma.mads.http import FETCH_PATH
from tests.cli.helpers import Kumactl, running_cp
from tests.fixtures.envoy import eventually

MESH = """
type: Mesh
name: default
metrics:
  enabledBackend: prom
  backends:
  - name: prom
    type: prometheus
    conf: {port: 5671, path: /stats, tls: {mode: providedTLS}}
"""
DATAPLANE = """
type: Dataplane
mesh: default
name: web-1
networking:
  address: 10.1.0.1
  inbound:
  - port: 8080
    tags: {kuma.io/service: web, version: v1}
"""


def _fetch(url: str, context: ssl.SSLContext) -> dict[str, Any]:
    request = urllib.request.Request(url + FETCH_PATH + "?fetch-timeout=0s", data=b"{}")
    with urllib.request.urlopen(request, context=context, timeout=10) as reply:
        assert reply.status == 200
        document: dict[str, Any] = json.loads(reply.read())
        return document


def test_kuma_cp_serves_mads_over_tls() -> None:
    env = {
        "KUMA_MONITORING_ASSIGNMENT_SERVER_TLS_ENABLED": "true",
        "KUMA_MONITORING_ASSIGNMENT_SERVER_INTERFACE": "127.0.0.1",
    }
    with running_cp(env) as cp:
        ready = cp.process.wait_for_line("kuma-cp is ready")
        match = re.search(r"mads_port=(\d+)", ready)
        assert match, ready
        url = f"https://127.0.0.1:{match.group(1)}"
        assert cp.process.work_dir is not None
        context = ssl.create_default_context(cafile=str(cp.process.work_dir / "kuma-cp.crt"))
        kumactl = Kumactl(cp.url)
        kumactl.ok("apply", "-f", "-", stdin=MESH)
        kumactl.ok("apply", "-f", "-", stdin=DATAPLANE)

        def target() -> dict[str, Any] | None:
            resources = _fetch(url, context).get("resources", [])
            return resources[0] if resources else None

        assignment = eventually(target, "web-1's monitoring assignment")
        assert assignment == {
            "@type": "type.googleapis.com/kuma.observability.v1.MonitoringAssignment",
            "mesh": "default",
            "service": "web",
            "targets": [
                {
                    "name": "web-1",
                    "scheme": "https",
                    "address": "10.1.0.1:5671",
                    "metrics_path": "/stats",
                    "labels": {
                        "kuma_io_service": "web",
                        "kuma_io_services": ",web,",
                        "version": "v1",
                        "versions": ",v1,",
                    },
                }
            ],
        }
        # Plain HTTP is not served when TLS is on.
        plain = urllib.request.Request(url.replace("https", "http") + FETCH_PATH, data=b"{}")
        with pytest.raises((ConnectionError, http.client.HTTPException)) as refused:
            urllib.request.urlopen(plain, timeout=10)
        assert not isinstance(refused.value, urllib.error.HTTPError), refused.value

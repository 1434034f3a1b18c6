"""Mesh metrics as Prometheus scrapes them: kuma-cp with a mesh whose enabled metrics backend is
prometheus, a kuma-dp with a real Envoy; ``GET http://<dp address>:<port>/metrics`` goes through
the ``kuma:metrics:prometheus`` listener and the ``kuma:metrics:hijacker`` cluster to kuma-dp's
hijacker on its unix socket, which answers with Envoy's stats in Prometheus text format, the
listener's ``usedonly`` filter applied, after the metrics of the ``aggregate`` application
endpoint; and Prometheus finding it through kuma-cp's MADS."""

from __future__ import annotations

import http.client
import re
import ssl
import urllib.request

import pytest
import yaml

from kuma.tls.certs import generate_ca_certificate
from tests.fixtures.envoy import HttpService, eventually, free_ports
from tests.mads.kuma_sd import discover

from .test_kuma_dp import Cluster, cluster

__all__ = ["cluster"]

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

#: Not 127.0.0.1, where Envoy's own admin API listens (as on a host with a real interface).
ADDRESS = "127.0.0.2"
APP_METRICS = "# TYPE app_orders_total counter\napp_orders_total 42"


def _scrape(
    port: int, source: str | None = None, tls: ssl.SSLContext | None = None
) -> tuple[int, str, str]:
    """GET /metrics from ``source`` (None: the kernel's choice for loopback, 127.0.0.1), over
    TLS when ``tls`` is given."""
    bind = (source, 0) if source else None
    connection = (
        http.client.HTTPSConnection(ADDRESS, port, timeout=5, source_address=bind, context=tls)
        if tls is not None
        else http.client.HTTPConnection(ADDRESS, port, timeout=5, source_address=bind)
    )
    try:
        connection.request("GET", "/metrics", headers={"Connection": "close"})
        response = connection.getresponse()
        return response.status, response.read().decode(), response.getheader("content-type", "")
    finally:
        connection.close()


def _discovered_and_scraped(cluster: Cluster, port: int) -> None:
    """Prometheus finds the sidecar through kuma-cp's MADS (as its kuma_sd does) and scrapes
    the target it was given."""
    assert cluster.cp is not None
    ready = cluster.cp.wait_for_line("kuma-cp is ready")
    mads = re.search(r"mads_port=(\d+)", ready)
    assert mads, ready

    def web() -> dict[str, str] | None:
        found = {t["instance"]: t for t in discover(f"http://127.0.0.1:{mads.group(1)}")}
        return found.get("web-01")

    target = eventually(web, "web-01 among the MADS targets", timeout=30)
    assert (target["__scheme__"], target["__address__"], target["__metrics_path__"]) == (
        "http",
        f"{ADDRESS}:{port}",
        "/metrics",
    )
    assert target["__meta_kuma_service"] == "web"
    url = f"{target['__scheme__']}://{target['__address__']}{target['__metrics_path__']}"
    with urllib.request.urlopen(url, timeout=5) as reply:
        assert reply.status == 200
        assert re.search(rb"^envoy_server_live\{?.*\}? 1$", reply.read(), re.M)


def test_prometheus_scrapes_the_sidecar(cluster: Cluster) -> None:
    inbound, admin, metrics = free_ports(3)
    exporter = HttpService(APP_METRICS)
    cluster.services.append(exporter)
    aggregate = [{"name": "app", "address": "127.0.0.1", "port": exporter.port, "path": "/m"}]
    conf = {"port": metrics, "envoy": {"usedOnly": True}, "aggregate": aggregate}
    mesh = {
        "type": "Mesh",
        "name": "default",
        "metrics": {
            "enabledBackend": "prom",
            "backends": [{"name": "prom", "type": "prometheus", "conf": conf}],
        },
    }
    mesh_file = cluster.store / "mesh-default.yaml"
    mesh_file.write_text(yaml.safe_dump(mesh))
    cluster.start_cp()
    app = HttpService("web")
    cluster.services.append(app)
    ports = {"inbound": inbound, "app": app.port, "admin": admin}
    cert, key = generate_ca_certificate([ADDRESS])
    cert_file, key_file = cluster.tmp / "metrics.crt", cluster.tmp / "metrics.key"
    cert_file.write_bytes(cert)
    key_file.touch(mode=0o600)
    key_file.write_bytes(key)
    files = ["--metrics-cert-path", str(cert_file), "--metrics-key-path", str(key_file)]
    cluster.kuma_dp("web-01", "web", ports, address=ADDRESS, extra=files)

    def scraped() -> tuple[int, str, str] | None:
        answer = _scrape(metrics)
        return answer if answer[0] == 200 else None

    _, body, content_type = eventually(
        scraped, f"metrics on {ADDRESS}:{metrics}/metrics", timeout=30
    )
    assert content_type.startswith("text/plain"), content_type
    # Envoy's stats in Prometheus text format, with the hijacker's own cluster among them ...
    assert re.search(r"^# TYPE envoy_\w+ (counter|gauge|histogram)$", body, re.M), body[:2000]
    assert re.search(r"^envoy_server_live\{?.*\}? 1$", body, re.M), body[:2000]
    assert 'envoy_cluster_name="kuma_metrics_hijacker"' in body
    # ... only the stats Envoy has updated (usedonly): the hijacker's cluster never overflowed.
    assert (
        'envoy_cluster_upstream_cx_overflow{envoy_cluster_name="kuma_metrics_hijacker"}' not in body
    )
    # ... after the application's metrics, fetched at its path without the query.
    assert body.startswith(APP_METRICS + "\n"), body[:500]
    assert exporter.paths[-1] == "/m"
    _discovered_and_scraped(cluster, metrics)

    # Mesh mTLS on (the backend's tls mode is Kuma's default, activeMTLSBackend): a scraper
    # without the mesh's certificate is refused, one on the proxy's own address still scrapes.
    mtls = {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}
    mesh_file.write_text(yaml.safe_dump({**mesh, "mtls": mtls}))

    def refused() -> bool:
        try:
            _scrape(metrics)
        except (OSError, http.client.HTTPException):
            return True
        return False

    eventually(refused, "plaintext scrape from 127.0.0.1 refused under mesh mTLS", timeout=30)
    status, body, _ = _scrape(metrics, source=ADDRESS)
    assert status == 200
    assert body.startswith(APP_METRICS + "\n"), body[:500]
    assert refused(), "a scraper outside the mesh got the metrics in plaintext"

    # providedTLS: the endpoint speaks TLS with kuma-dp's certificate files, to everyone.
    conf["tls"] = {"mode": "providedTLS"}
    mesh_file.write_text(yaml.safe_dump({**mesh, "mtls": mtls}))

    def own_address_refused() -> bool:
        try:
            _scrape(metrics, source=ADDRESS)
        except (OSError, http.client.HTTPException):
            return True
        return False

    eventually(own_address_refused, "plaintext refused under providedTLS", timeout=30)
    trusting = ssl.create_default_context(cadata=cert.decode())
    status, body, _ = _scrape(metrics, tls=trusting)
    assert status == 200
    assert body.startswith(APP_METRICS + "\n"), body[:500]

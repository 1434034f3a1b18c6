"""A builtin gateway on a real Envoy configured by a real kuma-cp: a MeshGateway HTTP
listener and a MeshHTTPRoute targeting it send ``/web/...`` to service web and ``/api`` to
service api (each a sidecar Envoy in front of its app), redirect ``/old``, answer Kuma's 404
for other paths, and follow a route change; a TCP listener proxies to api (MeshTCPRoute); an
HTTPS listener (TERMINATE, its certificate from a mesh Secret over SDS) is left out while the
Secret is missing, then serves ``curl --cacert`` for its hostname with Kuma's HSTS header, as
a TLS listener with the same certificate proxies the decrypted connection to api;
with mesh mTLS on (STRICT, allow-all permissions) the gateway originates mTLS to the sidecars
as Kuma's does; a MeshFaultInjection targeting the MeshGateway aborts its requests."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from kuma.tls.certs import generate_ca_certificate
from kuma.xds.gateway.resources import EMPTY_GATEWAY
from tests.fixtures.envoy import (
    ControlPlane,
    EnvoyFactory,
    HttpService,
    dataplane_yaml,
    eventually,
    free_ports,
    http_get,
)
from tests.integration.test_mtls import ALLOW_ALL, mesh_yaml

pytestmark = pytest.mark.envoy

ROUTE = {
    "type": "MeshHTTPRoute",
    "mesh": "default",
    "name": "edge-routes",
    "spec": {
        "targetRef": {"kind": "MeshGateway", "name": "edge"},
        "to": [
            {
                "targetRef": {"kind": "Mesh"},
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/web"}}],
                        "default": {"backendRefs": [{"kind": "MeshService", "name": "web"}]},
                    },
                    {
                        "matches": [{"path": {"type": "Exact", "value": "/api"}}],
                        "default": {"backendRefs": [{"kind": "MeshService", "name": "api"}]},
                    },
                    {
                        "matches": [{"path": {"type": "Exact", "value": "/old"}}],
                        "default": {
                            "filters": [
                                {
                                    "type": "RequestRedirect",
                                    "requestRedirect": {"scheme": "https", "statusCode": 301},
                                }
                            ]
                        },
                    },
                ],
            }
        ],
    },
}


HOST = "gateway.test"


def curl_https(port: int, path: str, ca: Path) -> tuple[int, dict[str, str], str]:
    """``curl --cacert`` to the gateway's HTTPS listener for ``HOST`` (SNI and Host)."""
    done = subprocess.run(
        [
            "curl", "-sS", "-i", "--max-time", "5", "--cacert", str(ca),
            "--resolve", f"{HOST}:{port}:127.0.0.1", f"https://{HOST}:{port}{path}",
        ],
        capture_output=True, text=True, check=False, timeout=10,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    head, _, body = done.stdout.replace("\r\n", "\n").partition("\n\n")
    status_line, *lines = head.splitlines()
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def test_gateway_routes_by_path_to_two_services(
    control_plane: ControlPlane,
    envoy_factory: EnvoyFactory,
    http_services: Callable[[str], HttpService],
    tmp_path: Path,
) -> None:
    apps = {name: http_services(name) for name in ("web", "api")}
    gateway_port, tcp_port, https_port, tls_port, *inbound_ports = free_ports(6)
    for (name, app), port in zip(apps.items(), inbound_ports, strict=True):
        control_plane.put(name, dataplane_yaml(name, inbounds=[(port, app.port, name)]))
        node = f"default.{name}"
        sidecar = envoy_factory(
            node, name, control_plane.dp_port, token=control_plane.token(node), ca=control_plane.ca
        )
        sidecar.wait_live()
    gateway = {
        "type": "MeshGateway",
        "mesh": "default",
        "name": "edge",
        "selectors": [{"match": {"kuma.io/service": "edge"}}],
        "conf": {
            "listeners": [
                {"protocol": "HTTP", "port": gateway_port},
                {"protocol": "TCP", "port": tcp_port},
                {
                    "protocol": "HTTPS",
                    "port": https_port,
                    "hostname": HOST,
                    "tls": {"mode": "TERMINATE", "certificates": [{"secret": "edge-cert"}]},
                },
                {
                    "protocol": "TLS",
                    "port": tls_port,
                    "hostname": HOST,
                    "tls": {"mode": "TERMINATE", "certificates": [{"secret": "edge-cert"}]},
                },
            ]
        },
    }
    tcp_route = {
        "type": "MeshTCPRoute",
        "mesh": "default",
        "name": "edge-tcp",
        "spec": {
            "targetRef": {"kind": "MeshGateway", "name": "edge"},
            "to": [
                {
                    "targetRef": {"kind": "Mesh"},
                    "rules": [
                        {"default": {"backendRefs": [{"kind": "MeshService", "name": "api"}]}}
                    ],
                }
            ],
        },
    }
    control_plane.put("route-edge-tcp", yaml.safe_dump(tcp_route))
    control_plane.put("meshgateway-edge", yaml.safe_dump(gateway))
    control_plane.put("route-edge", yaml.safe_dump(ROUTE))
    edge = {
        "type": "Dataplane",
        "mesh": "default",
        "name": "edge",
        "networking": {
            "address": "127.0.0.1",
            "gateway": {"type": "BUILTIN", "tags": {"kuma.io/service": "edge"}},
        },
    }
    control_plane.put("edge", yaml.safe_dump(edge))
    envoy = envoy_factory(
        "default.edge",
        "edge",
        control_plane.dp_port,
        token=control_plane.token("default.edge"),
        ca=control_plane.ca,
    )
    envoy.wait_live()
    envoy.wait_listener(f"edge:HTTP:{gateway_port}")

    def answer(path: str, expected: tuple[int, str]) -> bool:
        found = http_get(gateway_port, path)
        assert found == expected, (path, found)
        return True

    eventually(lambda: answer("/web/index.html", (200, "web")), "the gateway to route /web/")
    eventually(lambda: answer("/api", (200, "api")), "the gateway to route /api")
    assert http_get(gateway_port, "/web") == (200, "web")  # the prefix's exact path
    assert http_get(gateway_port, "/api/v1")[0] == 404  # an Exact match only
    assert http_get(gateway_port, "/webx") == (404, "")  # whole path segments only
    assert http_get(gateway_port, "/old?x=1")[0] == 301  # a RequestRedirect filter
    assert apps["web"].paths[-1] == "/web"
    assert apps["api"].hits == 1
    # The TCP listener proxies whole connections to api (a MeshTCPRoute on the gateway).
    envoy.wait_listener(f"edge:TCP:{tcp_port}")
    assert http_get(tcp_port, "/anything") == (200, "api")

    # The HTTPS listener's Secret arrives (until then the port was left out, the rest served):
    # a certificate for HOST served over SDS, which curl verifies (it trusts nothing else).
    chain, key = generate_ca_certificate([HOST], "RSA")
    ca_file = tmp_path / "edge-ca.pem"
    ca_file.write_bytes(chain)
    secret = {
        "type": "Secret",
        "mesh": "default",
        "name": "edge-cert",
        "data": base64.b64encode(chain + key).decode(),
    }
    control_plane.put("secret-edge-cert", yaml.safe_dump(secret))
    envoy.wait_listener(f"edge:HTTPS:{https_port}")

    def https_answers() -> bool:
        status, headers, body = curl_https(https_port, "/web/secure", ca_file)
        assert (status, body) == (200, "web"), (status, body)
        assert headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
        return True

    eventually(https_answers, "the gateway to terminate TLS for gateway.test")
    assert apps["web"].paths[-1] == "/web/secure"
    # The TLS listener terminates with the same certificate and proxies the connection to api
    # (the MeshTCPRoute), which answers the HTTP inside.
    envoy.wait_listener(f"edge:TLS:{tls_port}")

    def tls_answers() -> bool:
        status, headers, body = curl_https(tls_port, "/over-tls", ca_file)
        assert (status, body) == (200, "api"), (status, body)
        assert "strict-transport-security" not in headers
        return True

    eventually(tls_answers, "the gateway's TLS listener to proxy to api")

    # The route moves /web to /site: the gateway follows.
    rules = ROUTE["spec"]["to"][0]["rules"]  # type: ignore[index]
    rules[0]["matches"][0]["path"]["value"] = "/site"
    control_plane.put("route-edge", yaml.safe_dump(ROUTE))
    eventually(lambda: answer("/site/a", (200, "web")), "the gateway to route /site/")
    assert http_get(gateway_port, "/web/a")[0] == 404

    # Mesh mTLS on: the sidecars accept mTLS only, the gateway's clusters originate it.
    control_plane.put("allow-all", ALLOW_ALL)
    control_plane.put("mesh-default", mesh_yaml("STRICT"))

    def mtls_used() -> bool:
        stats = envoy.stats()
        # The gateway's own cluster to web (its ADS cluster speaks TLS to kuma-cp anyway).
        handshakes = [
            v
            for k, v in stats.items()
            if k.startswith("cluster.web-") and k.endswith(".ssl.handshake")
        ]
        assert handshakes, "the gateway's web cluster has no TLS yet"
        assert handshakes[0] > 0, "no TLS handshake to web yet"
        return True

    eventually(lambda: answer("/site/b", (200, "web")) and mtls_used(), "mTLS from the gateway")
    assert http_get(gateway_port, "/api") == (200, "api")

    # Without routes every host answers Kuma's 404 text.
    control_plane.delete("route-edge")
    eventually(lambda: answer("/api", (404, EMPTY_GATEWAY)), "the gateway to drop its routes")

    # A policy on the gateway (kuma/policies/gateway.py): MeshFaultInjection aborts every
    # request on its listeners with the policy's status.
    fault = {
        "type": "MeshFaultInjection",
        "mesh": "default",
        "name": "edge-faults",
        "spec": {
            "targetRef": {"kind": "MeshGateway", "name": "edge"},
            "to": [
                {
                    "targetRef": {"kind": "Mesh"},
                    "default": {"http": [{"abort": {"httpStatus": 418, "percentage": 100}}]},
                }
            ],
        },
    }
    control_plane.put("fault-edge", yaml.safe_dump(fault))
    eventually(lambda: http_get(gateway_port, "/api")[0] == 418, "the gateway's fault injection")

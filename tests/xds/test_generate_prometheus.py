"""The Prometheus endpoint (kuma/xds/generate/prometheus.py) against Kuma v2.7.29's
``PrometheusEndpointGenerator`` tests: the goldens ``testdata/prometheus-endpoint/default`` and
``custom`` (resource for resource; the only difference is ``internalAddressConfig``, where Kuma's
test context has loopback and a real Kuma its default ``ipam.knownInternalCIDRs``, which this
project always uses), and the cases where Kuma generates nothing."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import yaml

from kuma.resources.metrics import default_socket_path
from kuma.resources.model import Dataplane, Mesh
from kuma.xds.generate import StaticMeshView, generate_proxy, types
from kuma.xds.generate._pb import KNOWN_INTERNAL_CIDRS
from kuma.xds.generate.prometheus import SidecarMetrics, prometheus_resources
from kuma.xds.proxy_metadata import ProxyMetadata, proxy_metadata

from ..resources.test_metrics import dataplane_of as _dataplane
from ..resources.test_metrics import mesh_of as _mesh
from .test_generate import to_plain

FOO_BAR = SidecarMetrics("/foo/bar")
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
HCM = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
    "HttpConnectionManager"
)


MESH_DEFAULT = _mesh(
    """
    metrics:
      enabledBackend: prometheus-1
      backends:
      - name: prometheus-1
        type: prometheus
        conf:
          port: 1234
          path: /non-standard-path
          skipMTLS: false
          tags: {kuma.io/service: dataplane-metrics}
    """
)
MESH_CUSTOM = _mesh(
    """
    metrics:
      enabledBackend: prometheus-1
      backends:
      - name: prometheus-1
        type: prometheus
        conf:
          port: 1234
          path: /non-standard-path
          envoy: {filterRegex: "123.*", usedOnly: true}
    """
)
DP_PLAIN = _dataplane("networking: {address: 192.168.0.1}")
DP_OVERRIDE = _dataplane(
    """
    networking: {address: 192.168.0.1}
    metrics:
      name: prometheus-1
      type: prometheus
      conf: {port: 8765, path: /even-more-non-standard-path}
    """
)


def _kuma_golden(port: int, prefix: str, rewrite: str) -> dict[str, Any]:
    """Kuma's golden resources (facts of its output), keyed by name."""
    return {
        "kuma:metrics:hijacker": {
            "altStatName": "kuma_metrics_hijacker",
            "connectTimeout": "5s",
            "loadAssignment": {
                "clusterName": "kuma:metrics:hijacker",
                "endpoints": [
                    {"lbEndpoints": [{"endpoint": {"address": {"pipe": {"path": "/foo/bar"}}}}]}
                ],
            },
            "name": "kuma:metrics:hijacker",
            "type": "STATIC",
        },
        "kuma:metrics:prometheus": {
            "address": {"socketAddress": {"address": "192.168.0.1", "portValue": port}},
            "enableReusePort": False,
            "filterChains": [
                {
                    "filters": [
                        {
                            "name": "envoy.filters.network.http_connection_manager",
                            "typedConfig": {
                                "@type": HCM,
                                "httpFilters": [
                                    {
                                        "name": "envoy.filters.http.router",
                                        "typedConfig": {"@type": ROUTER},
                                    }
                                ],
                                "internalAddressConfig": {
                                    "cidrRanges": [
                                        {"addressPrefix": p, "prefixLen": n}
                                        for p, n in KNOWN_INTERNAL_CIDRS
                                    ]
                                },
                                "routeConfig": {
                                    "validateClusters": False,
                                    "virtualHosts": [
                                        {
                                            "domains": ["*"],
                                            "name": "kuma:metrics:prometheus",
                                            "routes": [
                                                {
                                                    "match": {"prefix": prefix},
                                                    "route": {
                                                        "cluster": "kuma:metrics:hijacker",
                                                        "prefixRewrite": rewrite,
                                                    },
                                                }
                                            ],
                                        }
                                    ],
                                },
                                "statPrefix": "kuma_metrics_prometheus",
                            },
                        }
                    ]
                }
            ],
            "name": "kuma:metrics:prometheus",
            "trafficDirection": "INBOUND",
        },
    }


@pytest.mark.parametrize(
    ("mesh", "proxy", "golden"),
    [
        (MESH_DEFAULT, DP_PLAIN, _kuma_golden(1234, "/non-standard-path", "/")),
        (
            MESH_CUSTOM,
            DP_OVERRIDE,
            _kuma_golden(8765, "/even-more-non-standard-path", "/?filter=123.*&usedonly"),
        ),
    ],
    ids=["default", "custom"],
)
def test_kuma_goldens(mesh: Mesh, proxy: Dataplane, golden: dict[str, Any]) -> None:
    resources = generate_proxy(proxy, StaticMeshView([proxy], mesh), 9902, metrics=FOO_BAR)
    assert (
        to_plain(resources[types.CLUSTER]["kuma:metrics:hijacker"])
        == golden["kuma:metrics:hijacker"]
    )
    listener = resources[types.LISTENER]["kuma:metrics:prometheus"]
    assert to_plain(listener) == golden["kuma:metrics:prometheus"]


@pytest.mark.parametrize(
    ("mesh", "proxy", "admin_port"),
    [
        (_mesh(""), DP_PLAIN, 9902),  # no metrics on the mesh
        (_mesh(""), DP_OVERRIDE, 9902),  # the Dataplane's own backend is not enough
        (MESH_DEFAULT, DP_OVERRIDE, 0),  # no admin API
        (_mesh(yaml.safe_dump({"metrics": MESH_DEFAULT.metrics}), "other"), DP_PLAIN, 9902),
    ],
    ids=["no-mesh-metrics", "dataplane-only", "no-admin-port", "other-mesh"],
)
def test_nothing_unless_enabled_mesh_wide(mesh: Mesh, proxy: Dataplane, admin_port: int) -> None:
    assert prometheus_resources(proxy, mesh, admin_port, FOO_BAR) == []


@pytest.mark.parametrize(
    "networking",
    [
        # the inbound's Envoy port, its application port, an outbound on a wildcard address
        "{address: 192.168.0.1, inbound: [{port: 1234, servicePort: 80, tags: {s: a}}]}",
        "{address: 192.168.0.1, inbound: [{port: 80, servicePort: 1234, tags: {s: a}}]}",
        "{address: 192.168.0.1, outbound: [{port: 1234, address: 0.0.0.0, tags: {s: b}}]}",
    ],
)
def test_port_of_the_dataplane_is_never_overshadowed(networking: str) -> None:
    proxy = _dataplane(f"networking: {networking}")
    assert prometheus_resources(proxy, MESH_DEFAULT, 9902, FOO_BAR) == []


def test_kuma_defaults_and_socket_path() -> None:
    mesh = _mesh(
        """
        metrics:
          enabledBackend: p
          backends: [{name: p, type: prometheus}]
        """
    )
    cluster, listener = prometheus_resources(DP_PLAIN, mesh, 9901)
    assert default_socket_path("backend-01", "demo") == "/tmp/kuma-mh-backend-01-demo.sock"
    assert to_plain(cluster)["loadAssignment"]["endpoints"][0]["lbEndpoints"][0]["endpoint"] == {
        "address": {"pipe": {"path": "/tmp/kuma-mh-backend-01-demo.sock"}}
    }
    plain = to_plain(listener)
    assert plain["address"]["socketAddress"]["portValue"] == 5670
    route = plain["filterChains"][0]["filters"][0]["typedConfig"]["routeConfig"]["virtualHosts"][0]
    assert route["routes"][0]["match"] == {"prefix": "/metrics"}
    long = default_socket_path("x" * 120, "demo")
    assert len(long) == 98 + len(".sock")


_MTLS = {"enabledBackend": "builtin", "backends": [{"name": "builtin", "type": "builtin"}]}
_SAN = {"matcher": {"prefix": "spiffe://demo/"}, "sanType": "URI"}
_SDS = {"ads": {}, "resourceApiVersion": "V3"}
#: Kuma's golden ``default-mtls``: the server side of the mesh's mTLS.
_KUMA_MTLS_SOCKET = {
    "name": "envoy.transport_sockets.tls",
    "typedConfig": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
        "DownstreamTlsContext",
        "commonTlsContext": {
            "combinedValidationContext": {
                "defaultValidationContext": {"matchTypedSubjectAltNames": [_SAN]},
                "validationContextSdsSecretConfig": {
                    "name": "mesh_ca:secret:demo",
                    "sdsConfig": _SDS,
                },
            },
            "tlsCertificateSdsSecretConfigs": [
                {"name": "identity_cert:secret:demo", "sdsConfig": _SDS}
            ],
        },
        "requireClientCertificate": True,
    },
}


def test_kuma_golden_default_mtls() -> None:
    """Mesh mTLS on, ``skipMTLS: false``: plaintext from the proxy's own address only, the
    mesh's mTLS for everyone else (Kuma's golden ``default-mtls``)."""
    mesh = msgspec.structs.replace(MESH_DEFAULT, mtls=_MTLS)
    view = StaticMeshView([DP_PLAIN], mesh)
    resources = generate_proxy(DP_PLAIN, view, 9902, metrics=FOO_BAR)
    golden = _kuma_golden(1234, "/non-standard-path", "/")
    [plain] = golden["kuma:metrics:prometheus"]["filterChains"]
    golden["kuma:metrics:prometheus"]["filterChains"] = [
        {
            "filterChainMatch": {
                "sourcePrefixRanges": [{"addressPrefix": "192.168.0.1", "prefixLen": 32}]
            },
            **plain,
        },
        {**plain, "transportSocket": _KUMA_MTLS_SOCKET},
    ]
    listener = resources[types.LISTENER]["kuma:metrics:prometheus"]
    assert to_plain(listener) == golden["kuma:metrics:prometheus"]
    cluster = resources[types.CLUSTER]["kuma:metrics:hijacker"]
    assert to_plain(cluster) == golden["kuma:metrics:hijacker"]


@pytest.mark.parametrize(
    ("conf", "chains"),
    [({}, 2), ({"skipMTLS": True}, 1), ({"tls": {"mode": "disabled"}}, 1)],
    ids=["default-active", "skipMTLS", "disabled"],
)
def test_mesh_mtls_secures_unless_skipped(conf: dict[str, Any], chains: int) -> None:
    metrics = {
        "enabledBackend": "p",
        "backends": [{"name": "p", "type": "prometheus", "conf": conf}],
    }
    mesh = msgspec.structs.replace(MESH_DEFAULT, mtls=_MTLS, metrics=metrics)
    _, listener = prometheus_resources(DP_PLAIN, mesh, 9901)
    assert len(to_plain(listener)["filterChains"]) == chains


def test_socket_path_from_node_metadata() -> None:
    from envoy.config.core.v3 import base_pb2

    node = base_pb2.Node(id="demo.backend-01")
    node.metadata.fields["metricsSocketPath"].string_value = "/run/kuma/mh.sock"
    assert proxy_metadata(node) == ProxyMetadata(metrics=SidecarMetrics("/run/kuma/mh.sock"))


_CERTS = SidecarMetrics("/foo/bar", "/path/cert", "/path/key")


@pytest.mark.parametrize(
    ("mode", "sidecar", "tls"),
    [("providedTLS", _CERTS, True), ("providedTLS", FOO_BAR, False), ("disabled", _CERTS, False)],
    ids=["delegated-tls", "delegated-tls-fallback", "disabled-tls"],
)
def test_kuma_goldens_provided_tls(mode: str, sidecar: SidecarMetrics, tls: bool) -> None:
    """Kuma's goldens ``delegated-tls`` (kuma-dp's certificate files; Kuma's never-matching
    ``tls`` chain first), ``delegated-tls-fallback`` (no files: plaintext) and ``disabled-tls``
    (plaintext, mesh mTLS on or not)."""
    conf = {"port": 1234, "path": "/non-standard-path", "tls": {"mode": mode}}
    metrics = {
        "enabledBackend": "p",
        "backends": [{"name": "p", "type": "prometheus", "conf": conf}],
    }
    mesh = msgspec.structs.replace(MESH_DEFAULT, mtls=_MTLS, metrics=metrics)
    resources = generate_proxy(DP_PLAIN, StaticMeshView([DP_PLAIN], mesh), 9902, metrics=sidecar)
    golden = _kuma_golden(1234, "/non-standard-path", "/")["kuma:metrics:prometheus"]
    if tls:
        [plain] = golden["filterChains"]
        context = {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
            "DownstreamTlsContext",
            "commonTlsContext": {
                "tlsCertificates": [
                    {
                        "certificateChain": {"filename": "/path/cert"},
                        "privateKey": {"filename": "/path/key"},
                    }
                ]
            },
        }
        golden["filterChains"] = [
            {"filterChainMatch": {"transportProtocol": "tls"}, **plain},
            {
                **plain,
                "transportSocket": {"name": "envoy.transport_sockets.tls", "typedConfig": context},
            },
        ]
    assert to_plain(resources[types.LISTENER]["kuma:metrics:prometheus"]) == golden


def test_certificate_files_from_node_metadata() -> None:
    from envoy.config.core.v3 import base_pb2

    node = base_pb2.Node(id="demo.backend-01")
    node.metadata.fields["metricsCertPath"].string_value = "/path/cert"
    node.metadata.fields["metricsKeyPath"].string_value = "/path/key"
    assert proxy_metadata(node) == ProxyMetadata(
        metrics=SidecarMetrics("", "/path/cert", "/path/key")
    )

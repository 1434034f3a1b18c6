"""The Envoy bootstrap of a sidecar: who it is, where its control plane is, where its admin API is.

Shaped after Kuma's ``pkg/xds/bootstrap/template_v3.go`` (camelCase proto JSON, as Kuma renders
it), without what this control plane does not offer (HDS, the access-log socket, DNS):

* ``node``: id ``<mesh>.<name>``, cluster = the proxy's service, metadata read back by the
  control plane when the proxy connects: ``dataplane.resource`` (the Dataplane as JSON, when
  the proxy brought it), ``dataplane.admin.port``/``.address``, ``dataplane.proxyType``,
  ``dataplane.dns.port`` (when kuma-dp serves DNS), ``dataplane.readinessReporter.port`` (when
  kuma-dp reports readiness), ``metricsSocketPath`` (kuma-dp's metrics hijacker, Kuma's
  default path when kuma-dp names none), ``metricsCertPath``/``metricsKeyPath`` (when kuma-dp
  has a certificate for the Prometheus endpoint), ``version`` (kuma-dp's and Envoy's);
* ``admin`` on 127.0.0.1 only, at ``networking.admin.port`` or else the control plane's
  ``bootstrapServer.params.adminPort``;
* ADS (delta by default, ``bootstrapServer.params.xdsTransport: GRPC`` for state of the world)
  to ``ads_cluster``: HTTP/2 to the host the request came to and the dp server port, with the
  dataplane token as ``initial_metadata``; over TLS when the dp server speaks it, verifying the
  control plane's certificate against ``cp_validation_ctx`` (the CA kuma-dp trusts, and the
  host name or address kuma-dp used as the required subject name), as Kuma does;
* with ``dpServer.authn.enableReloadableTokens`` and a token file, ADS over Google gRPC whose
  file-based call credentials re-read kuma-dp's token file on every connection (Kuma's
  ``buildGrpcService``), so a token rotated on disk takes effect at the next reconnect. Only
  over TLS: gRPC sends no call credentials on a plaintext channel, so without TLS the token
  stays in the bootstrap.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import msgspec
import yaml

from kuma.resources import Dataplane, Mesh, ZoneEgress, ZoneIngress, encode_json
from kuma.resources.accesslog_pipe import ACCESS_LOG_SOCKET_KEY
from kuma.resources.metrics import (
    METRICS_CERT_KEY,
    METRICS_KEY_KEY,
    METRICS_SOCKET_KEY,
    default_socket_path,
    prometheus_config,
)

from .request import DATAPLANE_PROXY_TYPE, BootstrapRequest

#: Envoy's admin API is never reachable from off the host (Kuma's default adminAddress).
ADMIN_ADDRESS = "127.0.0.1"
ADS_CLUSTER = "ads_cluster"
#: Kuma's ``FieldDataplaneReadinessPort``.
READINESS_PORT_KEY = "dataplane.readinessReporter.port"
#: The gRPC metadata that carries the dataplane token.
AUTHORIZATION = "authorization"
XDS_TRANSPORTS = ("DELTA_GRPC", "GRPC")
_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_UPSTREAM_TLS = "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
#: Kuma's name of the static secret that holds what Envoy trusts for the control plane.
CP_VALIDATION_CONTEXT = "cp_validation_ctx"


class GeneratorParams(msgspec.Struct, frozen=True, kw_only=True):
    """What the control plane's configuration decides."""

    #: ``bootstrapServer.params.adminPort``: the admin port of proxies that do not set one.
    default_admin_port: int = 9901
    #: ``bootstrapServer.params.xdsTransport``: DELTA_GRPC or GRPC.
    xds_transport: str = "DELTA_GRPC"
    #: Kuma's ``bootstrapServer.params.xdsConnectTimeout``.
    xds_connect_timeout: str = "1s"
    #: ``dpServer.authn.dpProxy.type`` is ``dpToken``: a request without a token is refused
    #: (its presence only: the ADS stream is where the token is verified, as in Kuma).
    require_token: bool = False
    #: The dp server speaks TLS: Envoy's ADS cluster does too, verifying the control plane
    #: against the request's ``caCert``, else ``trusted_ca``.
    tls: bool = False
    #: The certificate proxies trust for this control plane (PEM; kuma-cp.crt).
    trusted_ca: str = ""
    #: The names the dp server's certificate carries: a proxy reaching it by another name
    #: would have Envoy refuse the ADS connection, so its bootstrap is refused at once (Kuma).
    certificate_names: frozenset[str] = frozenset()
    #: ``dpServer.authn.enableReloadableTokens``: Envoy reads the token from the file kuma-dp
    #: names (``dataplaneTokenPath``) on every ADS connection.
    reloadable_tokens: bool = False


def admin_port(dataplane: Dataplane | ZoneIngress | ZoneEgress, default_admin_port: int) -> int:
    """``networking.admin.port`` when set, else the control plane's default (the same rule as
    the admin cluster the xDS generator builds)."""
    networking = dataplane.networking
    if networking is not None and networking.admin is not None and networking.admin.port:
        return networking.admin.port
    return default_admin_port


def identifying_service(dataplane: Dataplane | ZoneIngress | ZoneEgress) -> str:
    """Kuma's ``GetIdentifyingService``: the gateway's service, else the first inbound's; for a
    ZoneIngress ``ingress`` (Kuma's bootstrap generator; Envoy needs a node cluster)."""
    if isinstance(dataplane, ZoneEgress):
        return "egress"
    if not isinstance(dataplane, Dataplane):
        return "ingress"
    services = dataplane.services
    return services[0] if services else ""


def generate(
    dataplane: Dataplane | ZoneIngress | ZoneEgress,
    request: BootstrapRequest,
    params: GeneratorParams,
    *,
    xds_host: str,
    xds_port: int,
    ipv4: bool = True,
) -> dict[str, Any]:
    """The bootstrap as a document (for YAML or JSON). ``ipv4``: the request reached the
    control plane over IPv4, so a host name is resolved preferring IPv4 addresses."""
    port = admin_port(dataplane, params.default_admin_port)
    metadata: dict[str, Any] = {
        "dataplane.admin.address": ADMIN_ADDRESS,
        "dataplane.admin.port": str(port),
        "dataplane.proxyType": request.proxy_type or DATAPLANE_PROXY_TYPE,
        METRICS_SOCKET_KEY: request.metrics_resources.socket_path
        or default_socket_path(dataplane.name, dataplane.mesh_name),
        "version": msgspec.to_builtins(request.version),
    }
    files = request.metrics_resources
    if files.cert_path and files.key_path:
        metadata[METRICS_CERT_KEY] = files.cert_path
        metadata[METRICS_KEY_KEY] = files.key_path
    if request.access_log_socket_path:
        metadata[ACCESS_LOG_SOCKET_KEY] = request.access_log_socket_path
    if request.dns_port:
        metadata["dataplane.dns.port"] = str(request.dns_port)
    if request.readiness_port:
        metadata[READINESS_PORT_KEY] = str(request.readiness_port)
    if request.dataplane_resource:
        # Re-encoded: YAML from the request becomes JSON, and what the control plane reads back
        # at connect time is exactly what was checked here.
        metadata["dataplane.resource"] = encode_json(dataplane).decode()
    reloadable = params.reloadable_tokens and params.tls and bool(request.dataplane_token_path)
    if reloadable:
        grpc_service = _google_grpc_service(
            xds_host, xds_port, request.dataplane_token_path, request.ca_cert or params.trusted_ca
        )
        static: dict[str, Any] = {}
    else:
        grpc_service = _grpc_service(request.dataplane_token)
        static = _static_resources(xds_host, xds_port, params, ipv4, request)
    return {
        "node": {
            # A zone proxy's is ``.<name>`` (no mesh), as Kuma's.
            "id": f"{dataplane.mesh_name}.{dataplane.name}",
            "cluster": identifying_service(dataplane),
            "metadata": metadata,
        },
        "admin": {"address": _socket_address(ADMIN_ADDRESS, port)},
        "dynamicResources": {
            "adsConfig": {
                "apiType": params.xds_transport,
                "transportApiVersion": "V3",
                "setNodeOnFirstMessageOnly": True,
                "grpcServices": [grpc_service],
            },
            "cdsConfig": _ads_source(),
            "ldsConfig": _ads_source(),
        },
        "staticResources": static,
    }


def _static_resources(
    host: str, port: int, params: GeneratorParams, ipv4: bool, request: BootstrapRequest
) -> dict[str, Any]:
    cluster = _ads_cluster(host, port, params, ipv4)
    if not params.tls:
        return {"clusters": [cluster]}
    cluster["transportSocket"] = _cp_tls(host)
    return {
        "secrets": [_cp_validation(host, request.ca_cert or params.trusted_ca)],
        "clusters": [cluster],
    }


def _cp_validation(host: str, ca_pem: str) -> dict[str, Any]:
    """Kuma's ``cp_validation_ctx``: the CA kuma-dp trusts, and the name kuma-dp used to reach
    the control plane, which its certificate must carry."""
    san_type = "IP_ADDRESS" if _is_ip(host) else "DNS"
    return {
        "name": CP_VALIDATION_CONTEXT,
        "validationContext": {
            "trustedCa": {"inlineString": ca_pem},
            "matchTypedSubjectAltNames": [{"sanType": san_type, "matcher": {"exact": host}}],
        },
    }


def _cp_tls(host: str) -> dict[str, Any]:
    context: dict[str, Any] = {
        "@type": f"type.googleapis.com/{_UPSTREAM_TLS}",
        "commonTlsContext": {
            "tlsParams": {"tlsMinimumProtocolVersion": "TLSv1_2"},
            "alpnProtocols": ["h2"],
            "validationContextSdsSecretConfig": {"name": CP_VALIDATION_CONTEXT},
        },
    }
    if not _is_ip(host):
        context["sni"] = host
    return {"name": "envoy.transport_sockets.tls", "typedConfig": context}


def _grpc_service(token: str) -> dict[str, Any]:
    service: dict[str, Any] = {"envoyGrpc": {"clusterName": ADS_CLUSTER}}
    if token:
        # Envoy sends it on every ADS stream; kuma-cp checks it on the first request (Kuma's
        # universal dataplane token). The bootstrap file is therefore a secret (kuma-dp: 0600).
        service["initialMetadata"] = [{"key": AUTHORIZATION, "value": token}]
    return service


def _google_grpc_service(host: str, port: int, token_path: str, ca_pem: str) -> dict[str, Any]:
    """ADS over Envoy's Google gRPC client, which verifies the control plane's certificate
    against ``ca_pem`` and the host it dials (so no ``ads_cluster`` and no
    ``cp_validation_ctx``), and whose call credentials read ``token_path`` anew on each
    connection. The keepalives are Kuma's."""
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    plugin = "envoy.grpc_credentials.file_based_metadata"
    return {
        "googleGrpc": {
            "targetUri": target,
            "statPrefix": "ads",
            "channelCredentials": {"sslCredentials": {"rootCerts": {"inlineString": ca_pem}}},
            "credentialsFactoryName": plugin,
            "callCredentials": [
                {
                    "fromPlugin": {
                        "name": plugin,
                        "typedConfig": {
                            "@type": "type.googleapis.com/envoy.config.grpc_credential.v3."
                            "FileBasedMetadataConfig",
                            # Sent as the ``authorization`` header, as the inline token is.
                            "secretData": {"filename": token_path},
                        },
                    }
                }
            ],
            "channelArgs": {
                "args": {
                    "grpc.keepalive_time_ms": {"intValue": "10000"},
                    "grpc.keepalive_timeout_ms": {"intValue": "30000"},
                    "grpc.http2.max_pings_without_data": {"intValue": "0"},
                }
            },
        }
    }


def _ads_source() -> dict[str, Any]:
    # initialFetchTimeout 0: Envoy waits for its first clusters and listeners however long the
    # control plane takes (Kuma's setting); a fresh dict each time keeps the YAML alias-free.
    return {"ads": {}, "initialFetchTimeout": "0s", "resourceApiVersion": "V3"}


def _socket_address(address: str, port: int) -> dict[str, Any]:
    return {"socketAddress": {"address": address, "portValue": port}}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _ads_cluster(host: str, port: int, params: GeneratorParams, ipv4: bool) -> dict[str, Any]:
    address = _socket_address(host, port)
    cluster: dict[str, Any] = {"name": ADS_CLUSTER}
    if _is_ip(host):
        cluster["type"] = "STATIC"
    else:
        # A name (``localhost``, a service name) is resolved by Envoy. Envoy's default prefers
        # IPv6, so ``localhost`` becomes ::1, where a control plane bound to 0.0.0.0 is not:
        # prefer the address family the bootstrap request itself came in on.
        cluster["type"] = "STRICT_DNS"
        cluster["dnsLookupFamily"] = "V4_PREFERRED" if ipv4 else "AUTO"
    return {
        **cluster,
        "connectTimeout": params.xds_connect_timeout,
        "loadAssignment": {
            "clusterName": ADS_CLUSTER,
            "endpoints": [{"lbEndpoints": [{"endpoint": {"address": address}}]}],
        },
        # gRPC needs HTTP/2 to the control plane.
        "typedExtensionProtocolOptions": {
            _HTTP_OPTIONS: {
                "@type": f"type.googleapis.com/{_HTTP_OPTIONS}",
                "explicitHttpConfig": {"http2ProtocolOptions": {}},
            }
        },
        # A control plane that vanished without closing the connection is noticed in ~40 s.
        "upstreamConnectionOptions": {
            "tcpKeepalive": {"keepaliveProbes": 3, "keepaliveTime": 10, "keepaliveInterval": 10}
        },
    }


def to_yaml(bootstrap: dict[str, Any]) -> str:
    return yaml.safe_dump(bootstrap, sort_keys=False, default_flow_style=False)


def sidecar_configuration(dataplane: Dataplane, mesh: Mesh | None = None) -> dict[str, Any]:
    """Kuma's ``kumaSidecarConfiguration`` (what kuma-dp needs beside Envoy's bootstrap): with
    prometheus metrics on ``mesh``, the enabled application endpoints whose metrics kuma-dp's
    hijacker merges into the proxy's (``aggregate``; address defaults to the Dataplane's)."""
    networking = dataplane.networking
    address = networking.address if networking is not None else ""
    config = prometheus_config(mesh, dataplane)
    aggregate = [
        {"name": a.name, "address": a.address or address, "port": a.port, "path": a.path}
        for a in (config.aggregate if config is not None else ())
        if a.enabled is not False
    ]
    return {
        "networking": {
            "isUsingTransparentProxy": dataplane.is_transparent,
            "address": address,
            "corefileTemplate": None,
        },
        "metrics": {"aggregate": aggregate},
    }

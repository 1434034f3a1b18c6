"""A builtin gateway's HTTPS and TLS ports: the listeners of one port collapse into one Envoy
listener (:mod:`.tls`), one filter chain per listener hostname, most exact first (Kuma's
``SortHostnamesByExactnessDec``), with its certificates as SDS Secrets (:mod:`.certificates`).

* HTTPS: each hostname has its own route configuration ``<listener>:<hostname>`` holding the
  virtual hosts of that listener hostname (the MeshHTTPRoutes' hostnames it covers).
* TLS: each hostname proxies to the backends of the MeshTCPRoutes selecting that listener; a
  hostname without one has no chain, a port without any chain no listener (as TCP ports).

A TLS port's PASSTHROUGH hostnames match by SNI and proxy the connection still encrypted.
A port whose certificates cannot be served (a Secret missing, not one key and some
certificates, a certificate given twice), or whose TLS mode is neither (crossMesh), is left
out whole, with a warning naming the gateway, the listener and the reason (never
the key). Kuma fails the proxy's whole update then and keeps serving its previous config;
here the gateway's other listeners keep following their inputs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from kuma.resources.model import GatewayListener
from kuma.xds import types

from .certificates import CertificateError, SecretLookup, server_secret
from .hostnames import exactness_key
from .parts import GatewayParts
from .resources import listener_name, route_configuration
from .tls import TlsChain, https_listener, https_route_config_name, tls_listener

log = logging.getLogger("kuma.xds.gateway")


def secrets_read(listeners: Sequence[GatewayListener]) -> set[str]:
    """The mesh Secrets these listeners' certificates name (their changes re-assemble)."""
    return {
        source.secret
        for listener in listeners
        if listener.tls is not None
        for source in listener.tls.certificates
        if source.secret
    }


def terminating(
    gw: GatewayParts,
    protocol: str,
    port: int,
    listeners: Sequence[GatewayListener],
    secrets: SecretLookup,
) -> None:
    """Add the Envoy listener of one HTTPS or TLS port (nothing when it cannot be served)."""
    name = listener_name(gw.gateway.name, protocol, port)
    ordered = sorted(listeners, key=lambda listener: exactness_key(listener.effective_hostname))
    try:
        certificates = [_certificates(listener, secrets) for listener in ordered]
    except CertificateError as error:
        log.warning(
            "MeshGateway %s of mesh %s: Envoy listener %s left out: %s",
            gw.gateway.name,
            gw.gateway.mesh,
            name,
            error,
            extra={
                "fields": {
                    "mesh": gw.gateway.mesh,
                    "meshGateway": gw.gateway.name,
                    "listener": name,
                    "reason": str(error),
                }
            },
        )
        return
    chains: list[TlsChain] = []
    configs: list[route_pb2.RouteConfiguration] = []
    for listener, found in zip(ordered, certificates, strict=True):
        hostname = listener.effective_hostname
        names = tuple(secret.name for secret in found)
        if protocol == "HTTPS":
            hosts, clusters = gw.route_table([listener])
            config_name = https_route_config_name(name, hostname)
            config = route_configuration(
                config_name, hosts, gw.caller_tags, clusters, port, https=True
            )
            configs.append(config)
            chains.append(TlsChain(hostname, names))
        else:
            weighted = gw.tcp_destinations(listener)
            if not weighted:  # no route, no chain
                continue
            passthrough = listener.tls is not None and listener.tls.mode == "PASSTHROUGH"
            chains.append(TlsChain(hostname, names, tuple(weighted), not passthrough))
        for secret in found:
            gw.put(types.SECRET, secret)
    for config in configs:  # policies read the services of every hostname of the port
        gw.put_routes(config, port)
    if not chains:
        return
    build = https_listener if protocol == "HTTPS" else tls_listener
    gw.put_listener(build(gw.gateway.name, gw.service, gw.address, port, chains), port, protocol)


def _certificates(listener: GatewayListener, secrets: SecretLookup) -> list[secret_pb2.Secret]:
    hostname = listener.effective_hostname
    where = f"listener {listener.protocol} {listener.port} {hostname!r}"
    if listener.cross_mesh:
        raise CertificateError(f"{where}: crossMesh listeners are not supported yet")
    mode = listener.tls.mode if listener.tls is not None else "NONE"
    if mode == "PASSTHROUGH" and listener.protocol == "TLS":
        return []  # the connection goes to the backend still encrypted
    if mode != "TERMINATE":
        raise CertificateError(f"{where}: unsupported TLS mode {mode!r}")
    assert listener.tls is not None
    found: dict[str, secret_pb2.Secret] = {}
    for source in listener.tls.certificates:
        try:
            secret = server_secret(source, hostname, secrets)
        except CertificateError as error:
            message = f"{where}: failed to generate TLS certificate: {error}"
            raise CertificateError(message) from None
        if secret.name in found:
            raise CertificateError(f"{where}: duplicate TLS certificate {secret.name!r}")
        found[secret.name] = secret
    return list(found.values())

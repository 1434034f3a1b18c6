"""Mesh mTLS in Envoy terms, after Kuma v2.7 (pkg/xds/envoy/tls, pkg/xds/envoy/secrets.go,
pkg/xds/generator/inbound_proxy_generator.go, ClientSideMTLSConfigurer).

* Certificates travel over SDS on the ADS stream: ``identity_cert:secret:<mesh>`` (the proxy's
  own certificate and key) and ``mesh_ca:secret:<mesh>`` (the mesh's root certificates), so a
  rotation sends one Secret and touches no listener or cluster.
* Inbound: a ``DownstreamTlsContext`` requiring a client certificate signed by the mesh CA
  with a URI SAN starting ``spiffe://<mesh>/``. PERMISSIVE has Kuma's ``tls_inspector`` and
  three chains (plaintext, application TLS passed through, Kuma mTLS recognised by ALPN
  ``kuma``); STRICT is PERMISSIVE without the first two: the same inspector and the very same
  Kuma-mTLS chain. A switch between the modes then changes only the listener's filter chains,
  which Envoy applies in place, draining only the chains that went away (plaintext and
  application TLS on the way to STRICT): the mesh's own connections, and the requests on them,
  carry on. Kuma's STRICT (one chain without a match, no inspector) makes Envoy replace the
  whole listener and close every connection when its drain time ends, requests in flight
  included. Unlike Kuma's, STRICT refuses a TLS client without ALPN ``kuma`` even when it holds
  a certificate of the mesh: every mesh proxy (sidecar, gateway, zone proxies passing TLS
  through) offers ``kuma``, and a second mTLS chain for other clients would cost each STRICT
  inbound listener about a kilobyte more per proxy. Authorization is RBAC's business
  (``rbac.py``), on the Kuma-mTLS chain only.
* Outbound: an ``UpstreamTlsContext`` with ALPN ``kuma``, SNI ``<service>{mesh=<mesh>}`` and
  the exact SAN ``spiffe://<mesh>/<service>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2

from kuma.resources.model import SERVICE_TAG

from ._pb import ADS_CONFIG_SOURCE, pack

IDENTITY_CERT = "identity_cert"
MESH_CA = "mesh_ca"
TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls"
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
KUMA_ALPN = "kuma"

_URI = common_pb2.SubjectAltNameMatcher.URI


def identity_secret_name(mesh: str) -> str:
    return f"{IDENTITY_CERT}:secret:{mesh}"


def mesh_ca_secret_name(mesh: str) -> str:
    return f"{MESH_CA}:secret:{mesh}"


def identity_secret(mesh: str, cert_pem: bytes, key_pem: bytes) -> secret_pb2.Secret:
    """The proxy's certificate (chain) and private key."""
    secret = secret_pb2.Secret(name=identity_secret_name(mesh))
    tls_certificate = secret.tls_certificate
    tls_certificate.certificate_chain.inline_bytes = cert_pem
    tls_certificate.private_key.inline_bytes = key_pem
    return secret


def mesh_ca_secret(mesh: str, root_pems: Iterable[bytes]) -> secret_pb2.Secret:
    """The roots a proxy of ``mesh`` trusts."""
    secret = secret_pb2.Secret(name=mesh_ca_secret_name(mesh))
    secret.validation_context.trusted_ca.inline_bytes = b"".join(root_pems)
    return secret


def sni_from_tags(tags: Mapping[str, str]) -> str:
    """Kuma's ``SNIFromTags``: ``<service>{k1=v1,k2=v2}`` with keys sorted, the service alone
    when there is no other tag."""
    extra = ",".join(f"{k}={tags[k]}" for k in sorted(tags) if k != SERVICE_TAG)
    service = tags.get(SERVICE_TAG, "")
    return f"{service}{{{extra}}}" if extra else service


def _sds(config: tls_pb2.SdsSecretConfig, name: str) -> None:
    config.name = name
    config.sds_config.CopyFrom(ADS_CONFIG_SOURCE)


def _common(context: common_pb2.CommonTlsContext, mesh: str) -> common_pb2.CommonTlsContext:
    combined = context.combined_validation_context
    _sds(combined.validation_context_sds_secret_config, mesh_ca_secret_name(mesh))
    _sds(context.tls_certificate_sds_secret_configs.add(), identity_secret_name(mesh))
    return context


def static_downstream_transport_socket(cert_path: str, key_path: str) -> base_pb2.TransportSocket:
    """Server side with a certificate and key read from files (Kuma's ``ServerSideStaticTLS``);
    no client certificate asked for."""
    context = tls_pb2.DownstreamTlsContext()
    certificate = context.common_tls_context.tls_certificates.add()
    certificate.certificate_chain.filename = cert_path
    certificate.private_key.filename = key_path
    return base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=pack(context))


def downstream_transport_socket(mesh: str) -> base_pb2.TransportSocket:
    """Server side: require a client certificate of this mesh."""
    context = tls_pb2.DownstreamTlsContext()
    context.require_client_certificate.value = True
    common = _common(context.common_tls_context, mesh)
    matcher = common.combined_validation_context.default_validation_context
    san = matcher.match_typed_subject_alt_names.add(san_type=_URI)
    san.matcher.prefix = f"spiffe://{mesh}/"
    return base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=pack(context))


def upstream_transport_socket(
    mesh: str, service: str, subset: Iterable[tuple[str, str]] = (), upstream: str | None = None
) -> base_pb2.TransportSocket:
    """Client side, towards ``service`` of ``mesh`` (the part of it ``subset``'s tags select,
    which the SNI carries, as in Kuma): only the service's exact SPIFFE id is accepted, or
    ``upstream``'s when another proxy answers for it (the zone egress: Kuma's
    ``ClientSideMTLS(..., ZoneEgressServiceName, ...)``)."""
    tags = {SERVICE_TAG: service, **dict(subset), "mesh": mesh}
    context = tls_pb2.UpstreamTlsContext(sni=sni_from_tags(tags))
    common = _common(context.common_tls_context, mesh)
    matcher = common.combined_validation_context.default_validation_context
    san = matcher.match_typed_subject_alt_names.add(san_type=_URI)
    san.matcher.exact = f"spiffe://{mesh}/{upstream or service}"
    common.alpn_protocols.append(KUMA_ALPN)
    return base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=pack(context))


_TLS_INSPECTOR = listener_components_pb2.ListenerFilter(
    name=TLS_INSPECTOR, typed_config=pack(tls_inspector_pb2.TlsInspector())
)


def secure_inbound(
    listener: listener_pb2.Listener, mesh: str, mode: str
) -> list[listener_components_pb2.FilterChain]:
    """Turn an inbound listener's single plaintext chain into the mode's chains (in place);
    return the chain that terminates the mesh's mTLS (where RBAC goes)."""
    (plain,) = listener.filter_chains
    listener.listener_filters.append(_TLS_INSPECTOR)
    template = listener_components_pb2.FilterChain()
    template.CopyFrom(plain)
    if mode == "PERMISSIVE":
        plain.filter_chain_match.transport_protocol = "raw_buffer"
        app_tls = listener.filter_chains.add()
        app_tls.CopyFrom(template)
        app_tls.filter_chain_match.transport_protocol = "tls"
    else:
        del listener.filter_chains[:]
    # The same message in both modes (match, filters, socket): see the module's docstring.
    kuma = listener.filter_chains.add()
    kuma.CopyFrom(template)
    kuma.filter_chain_match.transport_protocol = "tls"
    kuma.filter_chain_match.application_protocols.append(KUMA_ALPN)
    kuma.transport_socket.CopyFrom(downstream_transport_socket(mesh))
    return [kuma]

"""What a simulated sidecar needs to follow SDS as Envoy does: the Secret names a cluster or a
listener references (its TLS transport sockets' SDS configs) and whether a Secret it received
carries what Envoy would accept.

Envoy subscribes to exactly the Secrets its clusters and listeners reference, warms a cluster
or listener only once they arrived, and rejects a Secret without usable content; kuma-load's
sidecars do the same, so a mesh with mTLS converges only when every sidecar holds its
certificate, its private key and its mesh's CA.
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.core.v3.base_pb2 import TransportSocket
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.extensions.transport_sockets.tls.v3.secret_pb2 import Secret
from envoy.extensions.transport_sockets.tls.v3.tls_pb2 import (
    CommonTlsContext,
    DownstreamTlsContext,
    UpstreamTlsContext,
)

_PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
_PEM_ANY = b"-----BEGIN "
_UPSTREAM = UpstreamTlsContext.DESCRIPTOR.full_name
_DOWNSTREAM = DownstreamTlsContext.DESCRIPTOR.full_name


def _context_names(common: CommonTlsContext) -> list[str]:
    names = [config.name for config in common.tls_certificate_sds_secret_configs]
    if common.HasField("validation_context_sds_secret_config"):
        names.append(common.validation_context_sds_secret_config.name)
    if common.HasField("combined_validation_context"):
        combined = common.combined_validation_context
        if combined.HasField("validation_context_sds_secret_config"):
            names.append(combined.validation_context_sds_secret_config.name)
    return names


def _socket_names(sockets: Iterable[TransportSocket]) -> tuple[str, ...]:
    names: set[str] = set()
    for socket in sockets:
        typed = socket.typed_config
        kind = typed.type_url.rpartition("/")[2]
        if kind == _UPSTREAM:
            names.update(
                _context_names(UpstreamTlsContext.FromString(typed.value).common_tls_context)
            )
        elif kind == _DOWNSTREAM:
            context = DownstreamTlsContext.FromString(typed.value)
            names.update(_context_names(context.common_tls_context))
    return tuple(sorted(names))


def cluster_secrets(cluster: Cluster) -> tuple[str, ...]:
    """The SDS Secret names ``cluster`` references (its transport socket and matches)."""
    sockets = [match.transport_socket for match in cluster.transport_socket_matches]
    if cluster.HasField("transport_socket"):
        sockets.append(cluster.transport_socket)
    return _socket_names(sockets)


def listener_secrets(body: bytes) -> tuple[str, ...]:
    """The SDS Secret names a serialized Listener references (every filter chain)."""
    listener = Listener.FromString(body)
    chains = list(listener.filter_chains)
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    return _socket_names(c.transport_socket for c in chains if c.HasField("transport_socket"))


def secret_problem(name: str, body: bytes) -> str | None:
    """Why Envoy would reject this Secret (None: it would use it): a certificate chain and a
    private key in PEM, or a CA bundle in PEM, under the name it was subscribed by."""
    secret = Secret.FromString(body)
    if secret.name != name:
        return f"secret {name!r} arrived named {secret.name!r}"
    if secret.HasField("tls_certificate"):
        certificate = secret.tls_certificate
        if not certificate.certificate_chain.inline_bytes.startswith(_PEM_CERTIFICATE):
            return f"secret {name!r}: no PEM certificate chain"
        if not certificate.private_key.inline_bytes.startswith(_PEM_ANY):
            return f"secret {name!r}: no PEM private key"
        return None
    if secret.HasField("validation_context"):
        if not secret.validation_context.trusted_ca.inline_bytes.startswith(_PEM_CERTIFICATE):
            return f"secret {name!r}: no PEM CA bundle"
        return None
    return f"secret {name!r}: neither a certificate nor a validation context"

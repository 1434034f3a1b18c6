"""The policies Kuma 2.7 creates with every mesh (``pkg/defaults/mesh``), by name prefix:
``mesh-timeout-all-<mesh>``, ``mesh-gateways-timeout-all-<mesh>``,
``mesh-circuit-breaker-all-<mesh>`` and ``mesh-retry-all-<mesh>``.

A Mesh's ``skipCreatingInitialPolicies`` lists kinds not to create (``*``: none at all).
"""

from __future__ import annotations

from kuma.resources.model import Mesh, Policy, PolicyItem, PolicySpec, TargetRef

from . import meshcircuitbreaker, meshretry, meshtimeout

_MESH = TargetRef(kind="Mesh")


def _timeout(mesh: str) -> Policy:
    # Inbound side (from): twice the outbound timeouts, or off (Kuma's comment: "bigger than
    # outbound side timeouts or disabled").
    inbound = meshtimeout.Conf(
        connection_timeout="10s",
        idle_timeout="2h0m0s",
        http=meshtimeout.Http(
            request_timeout="0s", stream_idle_timeout="1h0m0s", max_stream_duration="0s"
        ),
    )
    outbound = meshtimeout.Conf(
        connection_timeout="5s",
        idle_timeout="1h0m0s",
        http=meshtimeout.Http(request_timeout="15s", stream_idle_timeout="30m0s"),
    )
    return meshtimeout.MeshTimeout(
        name=f"mesh-timeout-all-{mesh}",
        mesh=mesh,
        spec=PolicySpec(
            target_ref=TargetRef(kind="Mesh", proxy_types=("Sidecar",)),
            from_=(PolicyItem(target_ref=_MESH, default=inbound),),
            to=(PolicyItem(target_ref=_MESH, default=outbound),),
        ),
    )


def _gateways_timeout(mesh: str) -> Policy:
    inbound = meshtimeout.Conf(
        idle_timeout="5m0s",
        http=meshtimeout.Http(stream_idle_timeout="5s", request_headers_timeout="500ms"),
    )
    outbound = meshtimeout.Conf(
        idle_timeout="1h0m0s", http=meshtimeout.Http(stream_idle_timeout="5s")
    )
    return meshtimeout.MeshTimeout(
        name=f"mesh-gateways-timeout-all-{mesh}",
        mesh=mesh,
        spec=PolicySpec(
            target_ref=TargetRef(kind="Mesh", proxy_types=("Gateway",)),
            from_=(PolicyItem(target_ref=_MESH, default=inbound),),
            to=(PolicyItem(target_ref=_MESH, default=outbound),),
        ),
    )


def _circuit_breaker(mesh: str) -> Policy:
    limits = meshcircuitbreaker.ConnectionLimits(
        max_connections=1024, max_pending_requests=1024, max_requests=1024, max_retries=3
    )
    return meshcircuitbreaker.MeshCircuitBreaker(
        name=f"mesh-circuit-breaker-all-{mesh}",
        mesh=mesh,
        spec=PolicySpec(
            target_ref=_MESH,
            to=(
                PolicyItem(
                    target_ref=_MESH, default=meshcircuitbreaker.Conf(connection_limits=limits)
                ),
            ),
        ),
    )


def _retry(mesh: str) -> Policy:
    back_off = meshretry.BackOff(base_interval="25ms", max_interval="250ms")
    conf = meshretry.Conf(
        tcp=meshretry.Tcp(max_connect_attempt=5),
        http=meshretry.Http(num_retries=5, per_try_timeout="16s", back_off=back_off),
        grpc=meshretry.Grpc(num_retries=5, per_try_timeout="16s", back_off=back_off),
    )
    return meshretry.MeshRetry(
        name=f"mesh-retry-all-{mesh}",
        mesh=mesh,
        spec=PolicySpec(target_ref=_MESH, to=(PolicyItem(target_ref=_MESH, default=conf),)),
    )


def default_policies(mesh: Mesh) -> list[Policy]:
    """The default policies of ``mesh`` that its ``skipCreatingInitialPolicies`` allows."""
    skipped = set(mesh.skip_creating_initial_policies)
    if "*" in skipped:
        return []
    built = [
        _gateways_timeout(mesh.name),
        _timeout(mesh.name),
        _circuit_breaker(mesh.name),
        _retry(mesh.name),
    ]
    return [policy for policy in built if policy.TYPE not in skipped]

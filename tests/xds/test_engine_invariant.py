"""The engine's contract, checked by hypothesis stateful testing.

After any sequence of Dataplane, Mesh, MeshVips and policy (MeshTrafficPermission included)
creates, updates and deletes (services appearing and vanishing, health flips, protocol changes,
transparent proxying on and off, VIPs allocated, moved, released or lagging the service set,
mesh mTLS off/STRICT/PERMISSIVE, certificates issued or dropped (PERMISSIVE TLS readiness),
policies with overlapping targetRefs selecting and unselecting proxies, reconnects), what each
connected test proxy holds after applying every change it was told about equals a from-scratch
generation of the final state for that proxy, with the VIPs of the stored allocation and the
policies that select it.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from kuma.policies import resolve
from kuma.resources import Dataplane, Mesh, MeshVips, ResourceMeta, from_document, validate
from kuma.resources.model import Policy
from kuma.store import Operation, ResourceEvent
from kuma.xds.engine import Engine
from kuma.xds.engine.invalidation import Invalidation
from kuma.xds.engine.watches import Subscription
from kuma.xds.generate.proxy import generate_proxy, type_url_of
from kuma.xds.generate.view import StaticMeshView, services_of
from kuma.xds.snapshot import versioned

ADMIN_PORT = 9901
MESHES = ("default", "other")
NAMES = ("web-1", "web-2", "api-1", "db-1")
SERVICES = ("web", "api", "db")
PROTOCOLS = (None, "http", "http2", "grpc", "tcp", "kafka")
#: Tags an outbound may add to its service (inbounds carry version v1 or v2, or none).
SUBSETS: tuple[dict[str, str], ...] = ({}, {}, {"version": "v1"}, {"version": "v2"})
#: Few addresses, so that allocations often move a service to another's former VIP.
VIPS = ("240.0.0.1", "240.0.0.2", "240.0.0.3", "240.0.0.4")
#: Proxies with a connected stream; db-1 never connects (its Dataplane still feeds others).
CONNECTED = tuple(f"{m}.{n}" for m in MESHES for n in ("web-1", "web-2", "api-1"))
_META = ResourceMeta("1", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))


@st.composite
def dataplanes(draw: st.DrawFn) -> Dataplane:
    mesh = draw(st.sampled_from(MESHES))
    name = draw(st.sampled_from(NAMES))
    number = draw(st.integers(1, 3))
    networking: dict[str, Any] = {"address": f"10.0.0.{number}"}
    if draw(st.booleans()) and draw(st.integers(0, 5)) == 0:
        networking["gateway"] = {"tags": {"kuma.io/service": draw(st.sampled_from(SERVICES))}}
    else:
        inbounds = []
        for i in range(draw(st.integers(1, 2))):
            tags = {"kuma.io/service": draw(st.sampled_from(SERVICES))}
            protocol = draw(st.sampled_from(PROTOCOLS))
            if protocol is not None:
                tags["kuma.io/protocol"] = protocol
            if draw(st.booleans()):
                tags["version"] = draw(st.sampled_from(["v1", "v2"]))
            inbound: dict[str, Any] = {"port": 10000 + i, "servicePort": 8000 + i, "tags": tags}
            health = draw(st.sampled_from([None, True, False]))
            if health is not None:
                inbound["health"] = {"ready": health}
            state = draw(st.sampled_from([None, None, "Ready", "NotReady", "Ignored"]))
            if state is not None:
                inbound["state"] = state
            inbounds.append(inbound)
        networking["inbound"] = inbounds
    transparent = draw(st.booleans())
    if transparent:
        tp: dict[str, Any] = {"redirectPortInbound": 15006, "redirectPortOutbound": 15001}
        reachable = draw(st.lists(st.sampled_from(SERVICES), unique=True, max_size=2))
        if reachable:
            tp["reachableServices"] = reachable
        networking["transparentProxying"] = tp
    else:
        # Whole services and subsets of them (tags beyond kuma.io/service: their own
        # clusters, with the endpoints that carry the tags); a destination may repeat.
        targets = draw(
            st.lists(st.tuples(st.sampled_from(SERVICES), st.sampled_from(SUBSETS)), max_size=3)
        )
        networking["outbound"] = [
            {"port": 20000 + i, "tags": {"kuma.io/service": service, **subset}}
            for i, (service, subset) in enumerate(targets)
        ]
    if draw(st.integers(0, 4)) == 0:
        networking["admin"] = {"port": 9902}
    resource = from_document(
        {"type": "Dataplane", "mesh": mesh, "name": name, "networking": networking}
    )
    assert isinstance(resource, Dataplane)
    return resource


def _mtls(mode: str | None) -> dict[str, Any] | None:
    if mode is None:
        return None
    backend = {"name": "ca-1", "type": "builtin", "mode": mode}
    return {"enabledBackend": "ca-1", "backends": [backend]}


meshes = st.builds(
    lambda name, passthrough, mode: Mesh(
        name=name,
        networking=None if passthrough is None else {"outbound": {"passthrough": passthrough}},
        mtls=_mtls(mode),
    ),
    st.sampled_from(MESHES),
    st.sampled_from([None, True, False]),
    st.sampled_from([None, "STRICT", "PERMISSIVE"]),
)


@st.composite
def mesh_vips(draw: st.DrawFn) -> MeshVips:
    """An allocation as the store may hold it: any services (present or not), unique VIPs."""
    services = draw(st.lists(st.sampled_from(SERVICES), unique=True, max_size=len(SERVICES)))
    addresses = draw(st.permutations(VIPS))[: len(services)]
    vips = dict(zip(services, addresses, strict=True))
    return MeshVips(name=draw(st.sampled_from(MESHES)), vips=vips)


POLICY_NAMES = ("p-a", "p-b", "p-c")


@st.composite
def target_refs(draw: st.DrawFn, top: bool) -> dict[str, Any]:
    kind = draw(st.sampled_from(["Mesh", "MeshService", "MeshSubset", "MeshServiceSubset"]))
    ref: dict[str, Any] = {"kind": kind}
    if kind in ("MeshService", "MeshServiceSubset"):
        ref["name"] = draw(st.sampled_from(SERVICES))
    if kind in ("MeshSubset", "MeshServiceSubset"):
        ref["tags"] = {"version": draw(st.sampled_from(["v1", "v2"]))}
    if top and kind in ("Mesh", "MeshSubset") and draw(st.booleans()):
        ref["proxyTypes"] = [draw(st.sampled_from(["Sidecar", "Gateway"]))]
    return ref


_CONFS: dict[str, list[dict[str, Any]]] = {
    "MeshTimeout": [
        {"idleTimeout": "20s"},
        {"connectionTimeout": "2s", "http": {"requestTimeout": "3s"}},
        {"http": {"streamIdleTimeout": "7s", "requestHeadersTimeout": "1s"}},
    ],
    "MeshRetry": [
        {"tcp": {"maxConnectAttempt": 2}},
        {"http": {"numRetries": 3, "retryOn": ["5xx", "503"]}},
        {"grpc": {"numRetries": 1}, "http": {"perTryTimeout": "1s"}},
    ],
    "MeshHealthCheck": [
        {"http": {"path": "/health"}, "tcp": {}},
        {"interval": "3s", "tcp": {"send": "x"}},
    ],
    "MeshCircuitBreaker": [
        {"connectionLimits": {"maxConnections": 7}},
        {"outlierDetection": {"detectors": {"totalFailures": {"consecutive": 2}}}},
    ],
    "MeshTrafficPermission": [
        {"action": "Allow"},
        {"action": "Deny"},
        {"action": "AllowWithShadowDeny"},
    ],
}


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    """A policy of a kind this project implements, with a random (often overlapping) top-level
    targetRef and ``to``/``from`` items."""
    kind = draw(st.sampled_from(sorted(_CONFS)))
    top = draw(target_refs(top=True))
    spec: dict[str, Any] = {"targetRef": top}
    if kind == "MeshTrafficPermission":
        # Only ``from``: clients by any targetRef kind, overlapping actions.
        spec["from"] = [
            {
                "targetRef": draw(target_refs(top=False)),
                "default": draw(st.sampled_from(_CONFS[kind])),
            }
            for _ in range(draw(st.integers(1, 3)))
        ]
        return _policy(draw, kind, spec)
    to_kinds = ["Mesh", "MeshService"]
    spec["to"] = [
        {
            "targetRef": {"kind": "Mesh"}
            if k == "Mesh"
            else {"kind": k, "name": draw(st.sampled_from(SERVICES))},
            "default": draw(st.sampled_from(_CONFS[kind])),
        }
        for k in draw(st.lists(st.sampled_from(to_kinds), min_size=1, max_size=2))
    ]
    if kind not in ("MeshRetry", "MeshHealthCheck") and draw(st.booleans()):
        spec["from"] = [
            {"targetRef": {"kind": "Mesh"}, "default": draw(st.sampled_from(_CONFS[kind]))}
        ]
    return _policy(draw, kind, spec)


def _policy(draw: st.DrawFn, kind: str, spec: dict[str, Any]) -> Policy:
    resource = from_document(
        {
            "type": kind,
            "mesh": draw(st.sampled_from(MESHES)),
            "name": draw(st.sampled_from(POLICY_NAMES)),
            "spec": spec,
        }
    )
    assert isinstance(resource, Policy)
    return resource


def expected(
    engine_view: dict[tuple[str, str], Dataplane],
    meshes: dict[str, Mesh],
    vips: dict[str, MeshVips],
    node: str,
    ready: set[str],
    policies: dict[tuple[str, str, str], Policy] | None = None,
) -> dict[str, dict[str, str]] | None:
    mesh_name, name = node.split(".", 1)
    dataplane = engine_view.get((mesh_name, name))
    if dataplane is None:
        return None
    in_mesh = [d for (m, _), d in engine_view.items() if m == mesh_name]
    stored = vips.get(mesh_name)
    view = StaticMeshView(in_mesh, meshes.get(mesh_name), stored.vips if stored else None)

    def tls_ready(service: str) -> bool:
        # Kuma's TLS readiness from scratch: every Dataplane providing the service is ready.
        members = [d for d in in_mesh if service in services_of(d)]
        return bool(members) and all(f"{mesh_name}.{d.name}" in ready for d in members)

    by_kind: dict[str, list[Policy]] = {}
    for (policy_mesh, kind, _), policy in sorted((policies or {}).items()):
        if policy_mesh == mesh_name:
            by_kind.setdefault(kind, []).append(policy)
    matched = resolve(dataplane, by_kind)
    generated = generate_proxy(dataplane, view, ADMIN_PORT, tls_ready=tls_ready, policies=matched)
    result: dict[str, dict[str, str]] = {}
    for by_name in generated.values():
        for resource_name, message in by_name.items():
            type_url = type_url_of(message)
            result.setdefault(type_url, {})[resource_name] = versioned(
                type_url, resource_name, message
            ).version
    return result


class EngineMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        #: Proxies holding a certificate of their mesh's CA (PERMISSIVE TLS readiness).
        self.ready: set[str] = set()
        self.engine = Engine(
            default_admin_port=ADMIN_PORT, chunk=2, identity_ready=self.ready.__contains__
        )
        self.dataplanes: dict[tuple[str, str], Dataplane] = {}
        self.meshes: dict[str, Mesh] = {}
        self.vips: dict[str, MeshVips] = {}
        self.policies: dict[tuple[str, str, str], Policy] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.held: dict[str, dict[str, dict[str, str]]] = {}
        self.pending: list[ResourceEvent] = []
        for node in CONNECTED:
            self._connect(node)

    def _connect(self, node: str) -> None:
        subscription = self.engine.subscribe(node)
        self.subscriptions[node] = subscription
        # A new stream reads the whole desired state once, then follows changes.
        subscription.take_changes()
        self.held[node] = {
            t: {n: r.version for n, r in subscription.resources(t).items()}
            for t in _types(subscription)
        }

    def _event(self, operation: Operation, resource: Dataplane | Mesh | MeshVips | Policy) -> None:
        self.pending.append(ResourceEvent(operation, resource, _META, len(self.pending) + 1))

    @rule(dataplane=dataplanes())
    def put_dataplane(self, dataplane: Dataplane) -> None:
        assume(not validate(dataplane))
        key = (dataplane.mesh, dataplane.name)
        operation = Operation.UPDATE if key in self.dataplanes else Operation.CREATE
        self.dataplanes[key] = dataplane
        self._event(operation, dataplane)

    @rule(mesh=st.sampled_from(MESHES), name=st.sampled_from(NAMES))
    def delete_dataplane(self, mesh: str, name: str) -> None:
        dataplane = self.dataplanes.pop((mesh, name), None)
        assume(dataplane is not None)
        assert dataplane is not None
        self._event(Operation.DELETE, dataplane)

    @rule(mesh=meshes)
    def put_mesh(self, mesh: Mesh) -> None:
        operation = Operation.UPDATE if mesh.name in self.meshes else Operation.CREATE
        self.meshes[mesh.name] = mesh
        self._event(operation, mesh)

    @rule(name=st.sampled_from(MESHES))
    def delete_mesh(self, name: str) -> None:
        mesh = self.meshes.pop(name, None)
        assume(mesh is not None)
        assert mesh is not None
        self._event(Operation.DELETE, mesh)

    @rule(vips=mesh_vips())
    def put_vips(self, vips: MeshVips) -> None:
        assume(not validate(vips))
        operation = Operation.UPDATE if vips.name in self.vips else Operation.CREATE
        self.vips[vips.name] = vips
        self._event(operation, vips)

    @rule(name=st.sampled_from(MESHES))
    def delete_vips(self, name: str) -> None:
        vips = self.vips.pop(name, None)
        assume(vips is not None)
        assert vips is not None
        self._event(Operation.DELETE, vips)

    @rule(mesh=st.sampled_from(MESHES), name=st.sampled_from(NAMES))
    def flip_identity(self, mesh: str, name: str) -> None:
        """A certificate issued or dropped: what kuma/mtls tells the engine (the services of
        the proxy, through Engine.invalidate)."""
        node = f"{mesh}.{name}"
        self.ready ^= {node}
        dataplane = self.dataplanes.get((mesh, name))
        if dataplane is not None:
            invalidation = Invalidation()
            invalidation.touch_services(mesh, services_of(dataplane))
            self.engine.invalidate(invalidation)

    @rule(policy=policies())
    def put_policy(self, policy: Policy) -> None:
        assume(not validate(policy))
        key = (policy.mesh, policy.TYPE, policy.name)
        operation = Operation.UPDATE if key in self.policies else Operation.CREATE
        self.policies[key] = policy
        self._event(operation, policy)

    @rule(data=st.data())
    def delete_policy(self, data: st.DataObject) -> None:
        assume(bool(self.policies))
        key = data.draw(st.sampled_from(sorted(self.policies)))
        self._event(Operation.DELETE, self.policies.pop(key))

    @rule()
    def apply_batch(self) -> None:
        """Apply everything pending as one batch (a batch may hold several events)."""
        self.engine.apply_now(self.pending)
        self.pending = []

    @rule(node=st.sampled_from(CONNECTED))
    def reconnect(self, node: str) -> None:
        self.engine.apply_now(self.pending)
        self.pending = []
        self.engine.unsubscribe(self.subscriptions[node])
        self._connect(node)

    @invariant()
    def proxies_hold_a_from_scratch_generation(self) -> None:
        self.engine.apply_now(self.pending)
        self.pending = []
        for node, subscription in self.subscriptions.items():
            held = self.held[node]
            for type_url, names in subscription.take_changes().items():
                bucket = held.setdefault(type_url, {})
                desired = subscription.resources(type_url)
                for name in names:
                    resource = desired.get(name)
                    if resource is None:
                        bucket.pop(name, None)
                    else:
                        bucket[name] = resource.version
            want = expected(
                self.dataplanes, self.meshes, self.vips, node, self.ready, self.policies
            )
            assert subscription.known == (want is not None), node
            have = {t: dict(b) for t, b in held.items() if b}
            assert have == {t: b for t, b in (want or {}).items() if b}, node


def _types(subscription: Subscription) -> list[str]:
    resources = subscription.record.resources
    return list(resources) if resources is not None else []


EngineMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("KUMA_INVARIANT_EXAMPLES", "300")),
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)
TestEngineInvariant = EngineMachine.TestCase

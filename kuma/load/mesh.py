"""The synthetic mesh: which proxies exist, which services they offer and which they call.

Everything is a pure function of a :class:`MeshSpec` (seeded), so the driver and the workers
agree on names without exchanging them, and a run can be repeated exactly.

Shape: ``proxies`` Dataplanes, ``instances`` per service (so ``ceil(proxies / instances)``
services). Service 0 is ``shared``: with ``fan_in`` every proxy calls it (one service used by
every proxy, the fan-out case). Service 1 is ``target``: exactly ``target_consumers`` proxies
call it (a change of one ``target`` instance affects that many proxies). Every proxy also calls
``outbounds`` other services picked at random. A ``transparent`` fraction of proxies use
transparent proxying: no explicit outbounds, the services they call are their
``reachableServices`` (or every service of the mesh with ``reachable_all``).

A change is a new value of the tag ``rev`` on a proxy's first inbound: the endpoint metadata of
its service changes, so every consumer of that service gets a new ClusterLoadAssignment whose
version is new every time (no ABA between two changes).

With ``default_policies`` the mesh carries Kuma's default policies (what kuma-cp creates with a
new mesh; a mesh written before kuma-cp starts gets none). With ``policy_group`` that many
proxies, drawn at random, carry the tag ``load-group: selected`` on their first inbound: the
policy scenario's MeshTimeout selects them, and only them, through a MeshSubset.
"""

from __future__ import annotations

import math
import random
from typing import Any

import msgspec

from kuma.policies import default_policies
from kuma.resources import Mesh, from_document, to_document

from .feature_policies import every_policy_documents, metrics_section

SHARED = "shared"
TARGET = "target"
#: Envoy-side ports of a proxy's inbounds and the first port of its explicit outbounds.
INBOUND_PORT = 20000
OUTBOUND_PORT = 10001
REV_TAG = "rev"
ADMIN_PORT_BASE = 30000
MTLS_MODES = ("strict", "permissive")
CA_BACKEND = "ca-1"
ALLOW_ALL = "allow-all"
POLICY_GROUP_TAG = "load-group"
POLICY_GROUP_VALUE = "selected"
#: The MeshTimeout the policy scenario writes again and again.
POLICY_CHANGE = "load-policy-change"


class MeshSpec(msgspec.Struct, frozen=True, kw_only=True):
    mesh: str = "default"
    proxies: int = 100
    instances: int = 10
    inbounds: int = 1
    outbounds: int = 5
    fan_in: bool = True
    target_consumers: int = 50
    transparent: float = 0.0
    reachable_all: bool = False
    #: Ports real Envoys on one host can all bind: each proxy's outbounds listen on its own
    #: loopback address and its admin API on port ``ADMIN_PORT_BASE + index``.
    real_envoy: bool = False
    #: Mesh mTLS: "" (off), "strict" or "permissive"; on, with an allow-all
    #: MeshTrafficPermission (with mTLS on and no permission Kuma denies every caller).
    mtls: str = ""
    #: ``dpCert.rotation.expiration`` of the workload certificates ("" : Kuma's default, 24h).
    mtls_expiration: str = ""
    #: Kuma's default policies in the mesh, as kuma-cp creates them with a new mesh.
    default_policies: bool = False
    #: A MeshFaultInjection on ``target`` naming this client service (``from`` MeshService,
    #: an abort at 0 %): the mesh then needs the callers' tags ("": none).
    fault_from: str = ""
    #: One mesh-wide policy of every kind that shapes a sidecar, and a Prometheus metrics
    #: backend on the Mesh (kuma/load/feature_policies.py).
    every_policy: bool = False
    #: Proxies tagged for the policy scenario's MeshSubset (0: none).
    policy_group: int = 0
    seed: int = 1

    @property
    def services(self) -> int:
        return max(1, math.ceil(self.proxies / max(1, self.instances)))


def service_name(index: int) -> str:
    if index == 0:
        return SHARED
    if index == 1:
        return TARGET
    return f"svc-{index:05d}"


def proxy_name(index: int) -> str:
    return f"dp-{index:06d}"


def node_id(spec: MeshSpec, index: int) -> str:
    return f"{spec.mesh}.{proxy_name(index)}"


def loopback_address(index: int) -> str:
    # Dataplane addresses are data only (nothing connects to them), kept in 127.0.0.0/8 anyway.
    return f"127.{1 + index // 65536}.{index // 256 % 256}.{index % 256}"


class Plan:
    """Who offers and who calls what, derived from a spec."""

    def __init__(self, spec: MeshSpec) -> None:
        self.spec = spec
        count = spec.proxies
        services = spec.services
        size = max(1, spec.instances)
        self.service_of: list[int] = [min(i // size, services - 1) for i in range(count)]
        rng = random.Random(spec.seed)
        k = min(spec.target_consumers, count) if services > 1 else 0
        self.target_consumers: frozenset[int] = frozenset(rng.sample(range(count), k))
        transparent = round(spec.transparent * count)
        self.transparent: frozenset[int] = frozenset(rng.sample(range(count), transparent))
        # Its own generator: the rest of the plan stays what it is without the group.
        grouper = random.Random(spec.seed * 7_919 + 1)
        group = min(spec.policy_group, count)
        self.policy_group: frozenset[int] = frozenset(grouper.sample(range(count), group))
        pool = list(range(2, services))
        self.calls: list[tuple[int, ...]] = []
        for index in range(count):
            picker = random.Random(spec.seed * 1_000_003 + index)
            own = self.service_of[index]
            # One more than needed, so that dropping the proxy's own service still leaves enough.
            drawn = picker.sample(pool, min(spec.outbounds + 1, len(pool)))
            chosen = sorted([s for s in drawn if s != own][: spec.outbounds])
            if index in self.target_consumers:
                chosen.insert(0, 1)
            if spec.fan_in:
                chosen.insert(0, 0)
            self.calls.append(tuple(chosen))
        self._callers: dict[int, list[int]] = {}
        for index, called in enumerate(self.calls):
            for service in called:
                self._callers.setdefault(service, []).append(index)

    @property
    def count(self) -> int:
        return self.spec.proxies

    def instances_of(self, service: int) -> list[int]:
        size = max(1, self.spec.instances)
        last = service == self.spec.services - 1
        return list(range(service * size, self.count if last else (service + 1) * size))

    def consumers(self, service: int) -> list[int]:
        """The proxies that call ``service`` (every transparent proxy with reachable_all)."""
        callers = self._callers.get(service, [])
        if not self.spec.reachable_all or not self.transparent:
            return list(callers)
        return sorted(set(callers) | self.transparent)

    def document(self, index: int, rev: int = 0) -> dict[str, Any]:
        """The Dataplane of proxy ``index`` as a universal-mode document."""
        spec = self.spec
        service = service_name(self.service_of[index])
        inbound = [
            {
                "port": INBOUND_PORT + j,
                "servicePort": 8080 + j,
                "tags": {
                    "kuma.io/service": service,
                    "kuma.io/protocol": "http",
                    **({REV_TAG: str(rev)} if j == 0 else {}),
                    **(
                        {POLICY_GROUP_TAG: POLICY_GROUP_VALUE}
                        if j == 0 and index in self.policy_group
                        else {}
                    ),
                },
            }
            for j in range(max(1, spec.inbounds))
        ]
        networking: dict[str, Any] = {"address": loopback_address(index), "inbound": inbound}
        called = [service_name(s) for s in self.calls[index]]
        if index in self.transparent:
            tp: dict[str, Any] = {"redirectPortInbound": 15006, "redirectPortOutbound": 15001}
            if not spec.reachable_all:
                tp["reachableServices"] = called
            networking["transparentProxying"] = tp
        else:
            networking["outbound"] = [
                {"port": OUTBOUND_PORT + j, "tags": {"kuma.io/service": s}}
                for j, s in enumerate(called)
            ]
            if spec.real_envoy:
                for outbound in networking["outbound"]:
                    outbound["address"] = networking["address"]
        if spec.real_envoy:
            networking["admin"] = {"port": ADMIN_PORT_BASE + index}
        return {
            "type": "Dataplane",
            "mesh": spec.mesh,
            "name": proxy_name(index),
            "networking": networking,
        }

    def mesh_document(self) -> dict[str, Any]:
        document: dict[str, Any] = {"type": "Mesh", "name": self.spec.mesh}
        mode = self.spec.mtls
        if mode:
            if mode not in MTLS_MODES:
                raise ValueError(f"mtls: {mode!r} is not one of {', '.join(MTLS_MODES)}")
            backend: dict[str, Any] = {
                "name": CA_BACKEND,
                "type": "builtin",
                "mode": mode.upper(),
                # The documented P-256 root (kuma/mtls/ca.py): Kuma's YAML stays valid.
                "conf": {"caCert": {"keyType": "ECDSA"}},
            }
            if self.spec.mtls_expiration:
                backend["dpCert"] = {"rotation": {"expiration": self.spec.mtls_expiration}}
            document["mtls"] = {"enabledBackend": CA_BACKEND, "backends": [backend]}
        if self.spec.every_policy:
            document["metrics"] = metrics_section()
        return document

    def policy_documents(self) -> list[dict[str, Any]]:
        """Kuma's default policies (``default_policies``) and, with mTLS on, one allow-all
        MeshTrafficPermission, as the README tells users."""
        documents: list[dict[str, Any]] = []
        if self.spec.default_policies:
            mesh = from_document(self.mesh_document())
            assert isinstance(mesh, Mesh)
            documents += [to_document(policy) for policy in default_policies(mesh)]
        if self.spec.fault_from:
            documents.append(self._fault_document())
        if self.spec.every_policy:
            documents += every_policy_documents(self.spec.mesh)
        if not self.spec.mtls:
            return documents
        return [
            *documents,
            {
                "type": "MeshTrafficPermission",
                "mesh": self.spec.mesh,
                "name": ALLOW_ALL,
                "spec": {
                    "targetRef": {"kind": "Mesh"},
                    "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}],
                },
            },
        ]

    def _fault_document(self) -> dict[str, Any]:
        client = {"kind": "MeshService", "name": self.spec.fault_from}
        abort = {"abort": {"httpStatus": 503, "percentage": 0}}
        return {
            "type": "MeshFaultInjection",
            "mesh": self.spec.mesh,
            "name": "fault-from-client",
            "spec": {
                "targetRef": {"kind": "MeshService", "name": TARGET},
                "from": [{"targetRef": client, "default": {"http": [abort]}}],
            },
        }


def policy_change_document(spec: MeshSpec, value: int) -> dict[str, Any]:
    """The policy scenario's MeshTimeout: the tagged group's outbound connect timeout becomes
    ``value`` seconds (a new value each time, so each write changes what they are served)."""
    return {
        "type": "MeshTimeout",
        "mesh": spec.mesh,
        "name": POLICY_CHANGE,
        "spec": {
            "targetRef": {"kind": "MeshSubset", "tags": {POLICY_GROUP_TAG: POLICY_GROUP_VALUE}},
            "to": [{"targetRef": {"kind": "Mesh"}, "default": {"connectionTimeout": f"{value}s"}}],
        },
    }


class Change(msgspec.Struct, frozen=True):
    """Proxy ``proxy`` gets ``rev`` on its first inbound: its service's endpoints change."""

    proxy: int
    rev: int


class Revisions:
    """The current ``rev`` of every proxy: the driver's record of what it wrote."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self._rev: dict[int, int] = {}
        self._counter = 0

    def rev(self, index: int) -> int:
        return self._rev.get(index, 0)

    def next_change(self, proxy: int) -> Change:
        self._counter += 1
        self._rev[proxy] = self._counter
        return Change(proxy, self._counter)

    def document(self, index: int) -> dict[str, Any]:
        return self.plan.document(index, self.rev(index))


def churn_proxies(plan: Plan, count: int, seed: int) -> list[int]:
    """``count`` proxies to change, cycling over services other than ``shared`` so one service
    is changed again only after every other one was (changes rarely overlap per service)."""
    rng = random.Random(seed)
    services = list(range(1, plan.spec.services)) or [0]
    order: list[int] = []
    while len(order) < count:
        rng.shuffle(services)
        order.extend(services)
    return [rng.choice(plan.instances_of(s)) for s in order[:count]]

"""The engine's gateway is, after every batch, what a fresh engine builds from the same
inputs, whatever the sequence of changes to MeshGateways, MeshHTTPRoutes, MeshTCPRoutes,
backends (endpoints, protocols), the mesh Secret HTTPS and TLS listeners read (valid,
renewed, invalid, deleted), policies on the gateway (MeshTimeout, MeshRetry,
MeshCircuitBreaker, MeshHealthCheck, MeshLoadBalancingStrategy, MeshRateLimit,
MeshFaultInjection; selecting it or not, per route too) and the gateway Dataplane (seeded
random sequences, one to three events per batch). Mutants caught when this was written:
backends' CLAs not patched (no identity subsets), no MeshGateway selection key, a route on a
MeshGateway not touching that key, backend inputs not watched; later, Secret events not
touching the gateways that read them (2/12 seeds); policy changes not re-assembling the
gateways, no kind keys (5/12)."""

from __future__ import annotations

import base64
import random

import pytest

from kuma.resources import Resource, decode_one
from kuma.resources.validation import validate
from kuma.store import Operation
from kuma.tls.certs import generate_ca_certificate
from kuma.xds import types
from kuma.xds.engine import Engine

from .helpers import BASE, GATEWAY, ROUTE_HEAD, events

EDGE = BASE.split("---\n")[1]
BACKEND = """\
type: Dataplane
mesh: default
name: {name}
networking:
  address: {address}
  inbound: [{{port: 8080, tags: {{kuma.io/service: {service}, kuma.io/protocol: {protocol}}}}}]
"""
LISTENERS = (
    "conf: {listeners: [{protocol: HTTP, port: 8000}]}",
    "conf: {listeners: [{protocol: HTTP, port: 8000}, {protocol: TCP, port: 9000}]}",
    "conf: {listeners: [{protocol: HTTP, port: 8000, hostname: a.dev, tags: {x: y}}]}",
    "conf: {listeners: [{protocol: HTTP, port: 8000}, {protocol: HTTPS, port: 8443,"
    " hostname: a.dev, tls: {mode: TERMINATE, certificates: [{secret: edge-cert}]}}]}",
    "conf: {listeners: [{protocol: TLS, port: 9443, hostname: a.dev,"
    " tls: {mode: TERMINATE, certificates: [{secret: edge-cert}]}}]}",
    "conf: {listeners: [{protocol: TLS, port: 9443, hostname: a.dev, tls: {mode: PASSTHROUGH}}]}",
)
#: The Secret the HTTPS and TLS listeners read: two certificates, and one that is not.
CERTIFICATES = (
    *(b"".join(generate_ca_certificate(["a.dev"], "ECDSA")) for _ in range(2)),
    b"not a certificate",
)
SECRET = "type: Secret\nmesh: default\nname: edge-cert\ndata: {data}\n"
#: Policies on the gateway (kuma/policies/gateway.py): top-level targetRefs that select it or
#: not, ``from`` and ``to`` rules; ``{top}`` and ``{name}`` vary.
POLICY_TOPS = (
    "{kind: Mesh, proxyTypes: [Gateway]}",
    "{kind: Mesh, proxyTypes: [Sidecar]}",
    "{kind: MeshGateway, name: edge}",
    "{kind: MeshGateway, name: edge, tags: {x: y}}",
    "{kind: MeshService, name: edge}",
    "{kind: MeshHTTPRoute, name: edge-routes}",
)
POLICIES = (
    "type: MeshTimeout\nmesh: default\nname: {name}\nspec:\n  targetRef: {top}\n"
    "  from: [{{targetRef: {{kind: Mesh}}, default: {{idleTimeout: 7s}}}}]\n"
    "  to: [{{targetRef: {{kind: Mesh}}, default: {{connectionTimeout: 3s,"
    " http: {{requestTimeout: 9s}}}}}}]\n",
    "type: MeshRetry\nmesh: default\nname: {name}\nspec:\n  targetRef: {top}\n"
    "  to: [{{targetRef: {{kind: Mesh}}, default: {{tcp: {{maxConnectAttempt: 2}},"
    " http: {{numRetries: 2}}}}}}]\n",
    "type: MeshCircuitBreaker\nmesh: default\nname: {name}\nspec:\n  targetRef: {top}\n"
    "  to: [{{targetRef: {{kind: MeshService, name: web}},"
    " default: {{connectionLimits: {{maxConnections: 7}}}}}}]\n",
    "type: MeshHealthCheck\nmesh: default\nname: {name}\nspec:\n  targetRef: {top}\n"
    "  to: [{{targetRef: {{kind: MeshService, name: web}}, default: {{interval: 9s,"
    " http: {{path: /health}}}}}}]\n",
    "type: MeshLoadBalancingStrategy\nmesh: default\nname: {name}\nspec:\n  targetRef: {top}\n"
    "  to: [{{targetRef: {{kind: Mesh}}, default: {{loadBalancer: {{type: RingHash,"
    " ringHash: {{hashPolicies: [{{type: Header, header: {{name: x-user}}}}]}}}}}}}}]\n",
    "type: MeshRateLimit\nmesh: default\nname: {name}\nspec:\n  targetRef: {top}\n"
    "  to: [{{targetRef: {{kind: Mesh}}, default: {{local: {{http: {{requestRate:"
    " {{num: 5, interval: 1s}}}}}}}}}}]\n",
    "type: MeshFaultInjection\nmesh: default\nname: {name}\nspec:\n  targetRef: {top}\n"
    "  to: [{{targetRef: {{kind: Mesh}}, default: {{http: [{{abort:"
    " {{httpStatus: 503, percentage: 5}}}}]}}}}]\n",
)
HTTP_RULES = (
    "        - matches: [{path: {type: PathPrefix, value: /a}}]\n"
    "          default: {backendRefs: [{kind: MeshService, name: web}]}\n",
    "        - matches: [{path: {type: Exact, value: /b}, method: GET}]\n"
    "          default: {backendRefs: [{kind: MeshService, name: web, weight: 3},"
    " {kind: MeshService, name: api}]}\n",
)
TCP_ROUTE = """\
type: MeshTCPRoute
mesh: default
name: tcp
spec:
  targetRef: {kind: MeshGateway, name: edge}
  to:
    - targetRef: {kind: Mesh}
      rules: [{default: {backendRefs: [{kind: MeshService, name: api}]}}]
"""


def _choices(rng: random.Random) -> Resource:
    kind = rng.randrange(7)
    if kind == 0:
        return decode_one(GATEWAY.replace(LISTENERS[0], rng.choice(LISTENERS)))
    if kind == 1:
        rules = "".join(rng.sample(HTTP_RULES, rng.randint(1, 2)))
        return decode_one(ROUTE_HEAD + rules)
    if kind == 2:
        return decode_one(TCP_ROUTE)
    if kind == 3:
        service = rng.choice(("web", "api"))
        return decode_one(
            BACKEND.format(
                name=f"{service}-{rng.randint(1, 2)}",
                address=f"10.0.1.{rng.randint(1, 9)}",
                service=service,
                protocol=rng.choice(("http", "http", "tcp")),
            )
        )
    if kind == 5:  # a policy the API would store (Kuma's validation)
        while True:
            policy = rng.choice(POLICIES).format(name=f"p{rng.randint(1, 2)}", top="{top}")
            resource = decode_one(policy.replace("{top}", rng.choice(POLICY_TOPS)))
            if not validate(resource):
                return resource
    if kind == 4:
        data = base64.b64encode(rng.choice(CERTIFICATES)).decode()
        return decode_one(SECRET.format(data=data))
    return decode_one(EDGE.replace("service: edge}", f"service: edge, v: '{rng.randint(1, 2)}'}}"))


def _served(engine: Engine) -> dict[str, dict[str, str]]:
    watch = engine.subscribe("default.edge-1")
    return {
        type_url: {name: r.version for name, r in watch.resources(type_url).items()}
        for type_url in (types.LISTENER, types.ROUTE, types.CLUSTER, types.ENDPOINT, types.SECRET)
    }


@pytest.mark.parametrize("seed", range(12))
def test_after_every_batch_the_gateway_equals_a_fresh_build(seed: int) -> None:
    _run(seed)


def test_the_sequences_serve_certificates() -> None:
    # Some seeds' gateways serve an HTTPS or TLS port (their Secrets are compared too).
    assert any(_run(seed) for seed in range(4))


def _run(seed: int) -> bool:
    """One seeded sequence; whether some batch served a certificate Secret."""
    covered = secured = False
    rng = random.Random(seed)
    engine = Engine()
    base = [decode_one(text) for text in BASE.split("---\n")]
    engine.apply_now(events(base))
    engine.subscribe("default.edge-1")
    stored: dict[tuple[str, str], Resource] = {}
    for _ in range(25):
        batch = []
        for _ in range(rng.randint(1, 3)):
            resource = _choices(rng)
            key = (resource.TYPE, resource.name)
            if key in stored and rng.random() < 0.3 and resource.TYPE != "Dataplane":
                batch.extend(events([stored.pop(key)], Operation.DELETE))
            else:
                stored[key] = resource
                batch.extend(events([resource], Operation.UPDATE))
        engine.apply_now(batch)
        fresh = Engine()
        fresh.apply_now(events(({(r.TYPE, r.name): r for r in base} | stored).values()))
        served = _served(fresh)
        assert _served(engine) == served
        covered |= any(name.startswith("edge:") for name in served[types.LISTENER])
        secured |= bool(served[types.SECRET])
    assert covered  # the comparison covered a served gateway
    return secured

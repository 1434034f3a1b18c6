"""HTTPS and TLS listeners of a builtin gateway, compared with Kuma 2.7's goldens (copied into
tests/gateway/kuma/): the HTTPS port 8083 of meshhttproute's
``gateway-listener-different-hostnames-specific`` case (two TERMINATE listeners ``*.secure.dev``
and ``*.super-secure.dev`` with inline certificates, two specific hostnames routed under each)
and the TLS port 9081 of meshtcproute's ``gateway`` case. The listener, its route
configurations, the clusters and endpoints they use and the SDS Secrets equal Kuma's, field by
field, but for the project-wide differences of :func:`as_this_project_serves`."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import yaml
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf import json_format  # type: ignore[import-untyped, unused-ignore]

from kuma.resources import decode
from kuma.xds import types
from kuma.xds.engine import Engine

from .helpers import events
from .test_kuma_golden import KINDS, KUMA, as_this_project_serves

HTTPS_CASE = "gateway-listener-different-hostnames-specific"
ALL_KINDS: dict[str, tuple[str, Any]] = {**KINDS, "secrets": (types.SECRET, secret_pb2.Secret)}


def golden(case: str, kind: str, names: set[str] | None = None) -> dict[str, Any]:
    document = yaml.safe_load((KUMA / f"{case}.{kind}.golden.yaml").read_text())
    expected = {
        item["name"]: item["resource"]
        for item in document["resources"]
        if names is None or item["name"] in names
    }
    for resource in expected.values():
        resource.pop("@type")
        if kind == "endpoints" or (kind == "listeners" and _http(resource)):
            as_this_project_serves(kind, resource)
    return expected


def _http(listener: dict[str, Any]) -> bool:
    return all(
        chain["filters"][0]["name"] == "envoy.filters.network.http_connection_manager"
        for chain in listener["filterChains"]
    )


def inline_pem(case: str, name: str) -> str:
    """A golden Secret's certificate and key, as the DataSource Kuma's test fed (base64)."""
    tls = golden(case, "secrets")[name]["tlsCertificate"]
    pem = tls["certificateChain"]["inlineString"] + tls["privateKey"]["inlineString"]
    return base64.b64encode(pem.encode()).decode()


def https_scenario() -> str:
    secure = inline_pem(HTTPS_CASE, "cert.rsa:inline:*.secure.dev")
    super_secure = inline_pem(HTTPS_CASE, "cert.rsa:inline:*.super-secure.dev")
    routes = []
    for tag, domain, path in (
        ("secure", "secure.dev", "dev"),
        ("super-secure", "super-secure.dev", "super-dev"),
    ):
        routes.append(f"""\
---
type: MeshHTTPRoute
mesh: default
name: {tag}
spec:
  targetRef: {{kind: MeshGateway, name: sample-gateway, tags: {{hostname: {tag}}}}}
  to:
    - targetRef: {{kind: Mesh}}
      hostnames: [first-specific.{domain}]
      rules:
        - matches: [{{path: {{type: PathPrefix, value: /first-specific-{path}}}}}]
          default: {{backendRefs: [{{kind: MeshService, name: backend, weight: 100}}]}}
    - targetRef: {{kind: Mesh}}
      hostnames: [second-specific.{domain}]
      rules:
        - matches: [{{path: {{type: PathPrefix, value: /second-specific-{path}}}}}]
          default: {{backendRefs: [{{kind: MeshService, name: backend, weight: 100}}]}}
""")
    return f"""\
type: Mesh
name: default
---
type: Dataplane
mesh: default
name: sample-gateway
networking:
  address: 192.168.0.1
  gateway: {{type: BUILTIN, tags: {{kuma.io/service: sample-gateway}}}}
---
type: Dataplane
mesh: default
name: backend-1
networking:
  address: 192.168.0.4
  inbound:
    - port: 8084
      tags: {{kuma.io/service: backend, kuma.io/protocol: http, region: us}}
---
type: MeshGateway
mesh: default
name: sample-gateway
selectors: [{{match: {{kuma.io/service: sample-gateway}}}}]
conf:
  listeners:
    - protocol: HTTPS
      hostname: "*.secure.dev"
      port: 8083
      tags: {{hostname: secure}}
      tls: {{mode: TERMINATE, certificates: [{{inline: {secure}}}]}}
    - protocol: HTTPS
      hostname: "*.super-secure.dev"
      port: 8083
      tags: {{hostname: super-secure}}
      tls: {{mode: TERMINATE, certificates: [{{inline: {super_secure}}}]}}
""" + "".join(routes)


HTTPS_NAMES = {
    "listeners": {"sample-gateway:HTTPS:8083"},
    "routes": {
        "sample-gateway:HTTPS:8083:*.secure.dev",
        "sample-gateway:HTTPS:8083:*.super-secure.dev",
    },
    "clusters": {"backend-348a834721ead661", "backend-dda53ef9426194b2"},
    "endpoints": {"backend-348a834721ead661", "backend-dda53ef9426194b2"},
    "secrets": {"cert.rsa:inline:*.secure.dev", "cert.rsa:inline:*.super-secure.dev"},
}


@pytest.mark.parametrize("kind", sorted(HTTPS_NAMES))
def test_https_listener_equals_kuma_golden(kind: str) -> None:
    expected = golden(HTTPS_CASE, kind, HTTPS_NAMES[kind])
    assert set(expected) == HTTPS_NAMES[kind]
    engine = Engine()
    engine.apply_now(events(decode(https_scenario())))
    type_url, message_type = ALL_KINDS[kind]
    assert served_any(engine, type_url, message_type, HTTPS_NAMES[kind]) == expected
    # Nothing more than Kuma's for this port (the admin listener and cluster are every proxy's).
    names = engine.subscribe("default.sample-gateway").resources(type_url)
    assert {n for n in names if not n.startswith("kuma:")} == HTTPS_NAMES[kind]


def served_any(engine: Engine, type_url: str, message_type: Any, names: set[str]) -> Any:
    found = engine.subscribe("default.sample-gateway").resources(type_url)
    return {
        name: json.loads(json_format.MessageToJson(message_type.FromString(found[name].body)))
        for name in names
        if name in found
    }


def tls_scenario(tls: str = "") -> str:
    """``tls``: the listeners' TLS section (default: TERMINATE with an inline certificate)."""
    # Any RSA key and certificate: the golden names the Secret by key type and hostname only.
    pem = inline_pem(HTTPS_CASE, "cert.rsa:inline:*.secure.dev")
    tls = tls or f"{{mode: TERMINATE, certificates: [{{inline: {pem}}}]}}"
    return f"""\
type: Mesh
name: default
---
type: Dataplane
mesh: default
name: sample-gateway
networking:
  address: 192.168.0.1
  gateway: {{type: BUILTIN, tags: {{kuma.io/service: sample-gateway}}}}
---
type: MeshGateway
mesh: default
name: sample-gateway
selectors: [{{match: {{kuma.io/service: sample-gateway}}}}]
conf:
  listeners:
    - {{protocol: TLS, port: 9081, hostname: go.dev, tls: {tls}}}
    - {{protocol: TLS, port: 9081, hostname: other.dev, tls: {tls}}}
---
type: MeshTCPRoute
mesh: default
name: tls
spec:
  targetRef: {{kind: MeshGateway, name: sample-gateway}}
  to:
    - targetRef: {{kind: Mesh}}
      rules:
        - default:
            backendRefs:
              - {{kind: MeshService, name: go-backend-1, weight: 50}}
              - {{kind: MeshService, name: go-backend-2, weight: 50}}
"""


def test_tls_listener_equals_kuma_meshtcproute_golden() -> None:
    """Kuma's test feeds each hostname its own rule, which a MeshTCPRoute cannot say without
    listener tags (and those change the cluster names): here go.dev's rule reaches both
    hostnames, so other.dev's chain is expected with go.dev's clusters; the rest (SNI match,
    TLS context, SDS names, order) is the golden's."""
    name = "sample-gateway:TLS:9081"
    expected = golden("meshtcproute-gateway", "listeners", {name})
    chains = expected[name]["filterChains"]
    chains[1]["filters"] = chains[0]["filters"]
    engine = Engine()
    engine.apply_now(events(decode(tls_scenario())))
    listeners = served_any(engine, types.LISTENER, KINDS["listeners"][1], {name})
    assert listeners == expected
    secrets = engine.subscribe("default.sample-gateway").resources(types.SECRET)
    assert set(secrets) == {"cert.rsa:inline:go.dev", "cert.rsa:inline:other.dev"}


def test_tls_passthrough_matches_sni_and_keeps_tls() -> None:
    """Kuma's configureTLS for PASSTHROUGH: the SNI and ``tls`` match, no transport socket (the
    backend terminates), no certificate."""
    scenario = tls_scenario("{mode: PASSTHROUGH}")
    engine = Engine()
    engine.apply_now(events(decode(scenario)))
    name = "sample-gateway:TLS:9081"
    (listener,) = served_any(engine, types.LISTENER, KINDS["listeners"][1], {name}).values()
    chains = listener["filterChains"]
    assert [c["filterChainMatch"] for c in chains] == [
        {"serverNames": ["go.dev"], "transportProtocol": "tls"},
        {"serverNames": ["other.dev"], "transportProtocol": "tls"},
    ]
    assert all("transportSocket" not in c for c in chains)
    proxy = chains[0]["filters"][0]["typedConfig"]
    assert proxy["weightedClusters"]["clusters"][0]["name"].startswith("go-backend-1-")
    assert not engine.subscribe("default.sample-gateway").resources(types.SECRET)

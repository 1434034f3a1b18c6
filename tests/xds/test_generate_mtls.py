"""mTLS and RBAC generation details beyond the goldens (mtls-strict, mtls-permissive)."""

from __future__ import annotations

import json
from typing import Any

from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import json_format  # type: ignore[import-untyped, unused-ignore]

from kuma.resources.model import Dataplane, Mesh
from kuma.xds.generate import StaticMeshView, generate_proxy, types
from kuma.xds.generate._pb import pack
from kuma.xds.generate.clusters import service_cluster
from kuma.xds.generate.proxy import proxy_parts, referenced_secrets, upstream_tls_mesh
from kuma.xds.generate.rbac import PermissionRule, TagMatch, apply_rbac, rbac_rules
from kuma.xds.generate.tls import identity_secret, mesh_ca_secret, sni_from_tags

from .test_generate import dataplane


def plain(message: Any) -> Any:
    return json.loads(json_format.MessageToJson(message))


def mtls_mesh(mode: str = "STRICT") -> Mesh:
    return Mesh(
        name="default",
        mtls={
            "enabledBackend": "ca",
            "backends": [{"name": "ca", "type": "builtin", "mode": mode}],
        },
    )


def test_sni_is_kumas() -> None:
    assert sni_from_tags({"kuma.io/service": "backend", "mesh": "default"}) == (
        "backend{mesh=default}"
    )
    assert sni_from_tags({"kuma.io/service": "b", "version": "v1", "mesh": "m"}) == (
        "b{mesh=m,version=v1}"
    )
    assert sni_from_tags({"kuma.io/service": "b"}) == "b"


def test_upstream_tls_context() -> None:
    cluster = service_cluster("backend", "http", "default")
    assert cluster.transport_socket.name == "envoy.transport_sockets.tls"
    context = tls_pb2.UpstreamTlsContext()
    cluster.transport_socket.typed_config.Unpack(context)
    assert plain(context) == {
        "sni": "backend{mesh=default}",
        "commonTlsContext": {
            "alpnProtocols": ["kuma"],
            "combinedValidationContext": {
                "defaultValidationContext": {
                    "matchTypedSubjectAltNames": [
                        {"sanType": "URI", "matcher": {"exact": "spiffe://default/backend"}}
                    ]
                },
                "validationContextSdsSecretConfig": {
                    "name": "mesh_ca:secret:default",
                    "sdsConfig": {"ads": {}, "resourceApiVersion": "V3"},
                },
            },
            "tlsCertificateSdsSecretConfigs": [
                {
                    "name": "identity_cert:secret:default",
                    "sdsConfig": {"ads": {}, "resourceApiVersion": "V3"},
                }
            ],
        },
    }


def test_permissive_waits_for_tls_readiness() -> None:
    assert upstream_tls_mesh(mtls_mesh("PERMISSIVE"), "a") is None
    assert upstream_tls_mesh(mtls_mesh("PERMISSIVE"), "a", lambda s: True) == "default"
    assert upstream_tls_mesh(mtls_mesh("STRICT"), "a") == "default"
    assert upstream_tls_mesh(None, "a", lambda s: True) is None


def test_rbac_rules_as_kuma_builds_them() -> None:
    rules = [
        PermissionRule((TagMatch("kuma.io/service", "web"),), "Allow"),
        PermissionRule((TagMatch("kuma.io/service", "bad"),), "Deny"),
        PermissionRule(
            (TagMatch("kuma.io/service", "ops"), TagMatch("version", "v1", negated=True)),
            "AllowWithShadowDeny",
        ),
    ]
    enforced, shadow = rbac_rules("default", rules)
    assert plain(enforced) == {
        "policies": {
            "MeshTrafficPermission": {
                "permissions": [{"any": True}],
                "principals": [
                    {"authenticated": {"principalName": {"exact": "spiffe://default/web"}}},
                    {
                        "andIds": {
                            "ids": [
                                {
                                    "authenticated": {
                                        "principalName": {"exact": "spiffe://default/ops"}
                                    }
                                },
                                {
                                    "notId": {
                                        "authenticated": {
                                            "principalName": {"exact": "kuma://version/v1"}
                                        }
                                    }
                                },
                            ]
                        }
                    },
                ],
            }
        }
    }
    assert shadow is not None
    assert plain(shadow)["action"] == "DENY"
    assert len(shadow.policies["MeshTrafficPermission"].principals) == 1
    # Only Deny (or nothing): ALLOW without policies, Envoy denies every caller.
    enforced, shadow = rbac_rules("default", [PermissionRule((), "Deny")])
    assert plain(enforced) == {}
    assert shadow is None
    enforced, _ = rbac_rules("default", [PermissionRule((), "Allow")])
    assert plain(enforced)["policies"]["MeshTrafficPermission"]["principals"] == [{"any": True}]


def test_network_rbac_goes_first_with_kumas_stat_prefix() -> None:
    chain = listener_components_pb2.FilterChain()
    chain.filters.add(name="envoy.filters.network.tcp_proxy").typed_config.CopyFrom(
        pack(tcp_proxy_pb2.TcpProxy(stat_prefix="x", cluster="x"))
    )
    apply_rbac(chain, "inbound:127.0.0.1:21011", "default", [PermissionRule((), "Allow")])
    assert [f.name for f in chain.filters] == [
        "envoy.filters.network.rbac",
        "envoy.filters.network.tcp_proxy",
    ]
    assert plain(chain)["filters"][0]["typedConfig"]["statPrefix"] == "inbound_127_0_0_1_21011."


def test_strict_inbound_and_referenced_secrets() -> None:
    proxy = dataplane(
        """
        name: web-01
        networking:
          address: 10.0.0.1
          inbound: [{port: 80, servicePort: 8080, tags: {kuma.io/service: web}}]
        """
    )
    view = StaticMeshView([proxy], mesh=mtls_mesh())
    resources = generate_proxy(proxy, view, 9901)
    listener: Any = resources[types.LISTENER]["inbound:10.0.0.1:80"]
    assert [f.name for f in listener.listener_filters] == ["envoy.filters.listener.tls_inspector"]
    # Kuma mTLS by ALPN alone: plaintext and other TLS match no chain.
    (chain,) = listener.filter_chains
    assert plain(chain.filter_chain_match) == {
        "transportProtocol": "tls",
        "applicationProtocols": ["kuma"],
    }
    assert chain.filters[0].name == "envoy.filters.network.rbac"
    context = tls_pb2.DownstreamTlsContext()
    chain.transport_socket.typed_config.Unpack(context)
    assert context.require_client_certificate.value
    validation = context.common_tls_context.combined_validation_context
    san = validation.default_validation_context.match_typed_subject_alt_names[0]
    assert san.matcher.prefix == "spiffe://default/"
    parts = proxy_parts(proxy, view, 9901)
    assert referenced_secrets(view.mesh, parts) == (
        "identity_cert:secret:default",
        "mesh_ca:secret:default",
    )
    assert referenced_secrets(None, parts) == ()


def tcp_and_http_inbounds() -> Dataplane:
    """web-01 with a TCP inbound (port 80) and an HTTP one (port 81)."""
    return dataplane(
        """
        name: web-01
        networking:
          address: 10.0.0.1
          inbound:
          - {port: 80, servicePort: 8080, tags: {kuma.io/service: web}}
          - {port: 81, servicePort: 8081, tags: {kuma.io/service: api, kuma.io/protocol: http}}
        """
    )


def test_mode_switch_changes_only_filter_chains_and_keeps_the_mtls_chain() -> None:
    """PERMISSIVE and STRICT listeners differ in their filter chains alone (so Envoy updates
    in place, Envoy's ``filterChainOnlyChange``), and the Kuma-mTLS chain is the same message
    in both (so its connections are not drained)."""
    proxy = tcp_and_http_inbounds()
    listeners = {
        mode: generate_proxy(proxy, StaticMeshView([proxy], mesh=mtls_mesh(mode)), 9901)[
            types.LISTENER
        ]
        for mode in ("PERMISSIVE", "STRICT")
    }
    for name in ("inbound:10.0.0.1:80", "inbound:10.0.0.1:81"):
        permissive: Any = listeners["PERMISSIVE"][name]
        strict: Any = listeners["STRICT"][name]
        shells = []
        for listener in (permissive, strict):
            shell = type(listener)()
            shell.CopyFrom(listener)
            del shell.filter_chains[:]
            shells.append(shell)
        assert shells[0] == shells[1]
        kuma = [
            chain
            for chain in permissive.filter_chains
            if "kuma" in chain.filter_chain_match.application_protocols
        ]
        assert len(kuma) == 1
        assert list(strict.filter_chains) == kuma


def test_secret_resources() -> None:
    identity = identity_secret("default", b"CERT", b"KEY")
    assert identity.name == "identity_cert:secret:default"
    assert identity.tls_certificate.private_key.inline_bytes == b"KEY"
    ca = mesh_ca_secret("default", [b"A", b"B"])
    assert ca.name == "mesh_ca:secret:default"
    assert ca.validation_context.trusted_ca.inline_bytes == b"AB"


def test_rbac_replaces_an_earlier_rbac() -> None:
    proxy = tcp_and_http_inbounds()
    resources = generate_proxy(proxy, StaticMeshView([proxy], mesh=mtls_mesh()), 9901)
    allow = [PermissionRule((TagMatch("kuma.io/service", "web"),), "Allow")]
    for name in ("inbound:10.0.0.1:80", "inbound:10.0.0.1:81"):
        listener: Any = resources[types.LISTENER][name]
        chain = listener.filter_chains[0]
        apply_rbac(chain, name, "default", allow)
        document = plain(chain)
        filters = document["filters"]
        if "rbac" in filters[0]["name"]:  # tcp: one network RBAC, first
            assert [f["name"] for f in filters].count("envoy.filters.network.rbac") == 1
            rules = filters[0]["typedConfig"]["rules"]
        else:  # http: one HTTP RBAC, first in the connection manager, none at network level
            assert all(f["name"] != "envoy.filters.network.rbac" for f in filters)
            http_filters = filters[0]["typedConfig"]["httpFilters"]
            assert [f["name"] for f in http_filters].count("envoy.filters.http.rbac") == 1
            assert http_filters[0]["name"] == "envoy.filters.http.rbac"
            rules = http_filters[0]["typedConfig"]["rules"]
        assert rules["policies"]["MeshTrafficPermission"]["principals"] == [
            {"authenticated": {"principalName": {"exact": "spiffe://default/web"}}}
        ]

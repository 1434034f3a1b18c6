"""An ExternalService's cluster, as Kuma's ClientSideTLS/ProvidedEndpointCluster cases
(pkg/xds/envoy/clusters/v3/client_side_tls_configurer_test.go) describe it, and the config
dump's redaction of its inline client key."""

from __future__ import annotations

import base64

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2

from kuma.api.config_dump import config_dump
from kuma.resources import ExternalService, decode_one
from kuma.xds import types
from kuma.xds.generate.destination import Destination
from kuma.xds.generate.external import external_cluster, external_endpoint, resolve_endpoints
from kuma.xds.snapshot import versioned

KEY = b"-----BEGIN PRIVATE KEY-----\nCLIENTKEY\n-----END PRIVATE KEY-----\n"


def _service(address: str, tls: str) -> ExternalService:
    resource = decode_one(
        f"type: ExternalService\nmesh: default\nname: es\nnetworking:\n  address: {address}\n"
        f"  tls: {tls}\ntags: {{kuma.io/service: ext}}\n"
    )
    assert isinstance(resource, ExternalService)
    return resource


def _context(cluster: cluster_pb2.Cluster) -> tls_pb2.UpstreamTlsContext:
    (match,) = cluster.transport_socket_matches
    context = tls_pb2.UpstreamTlsContext()
    assert match.transport_socket.typed_config.Unpack(context)
    return context


def test_kuma_cases() -> None:
    secrets = {"ca": b"cacert", "cert": b"clientcert"}.get
    # "cluster with mTLS": SNI is the host name; no validation without a CA (as Kuma).
    plain = external_endpoint(_service("httpbin.org:3000", "{enabled: true}"), secrets)
    context = _context(external_cluster(Destination("ext"), "tcp", [plain]))
    assert context == tls_pb2.UpstreamTlsContext(sni="httpbin.org")
    # "... empty SNI because target is an IP address".
    by_ip = external_endpoint(_service("192.168.0.1:3000", "{enabled: true}"), secrets)
    assert _context(external_cluster(Destination("ext"), "tcp", [by_ip])).sni == ""
    # "cluster with mTLS and certs": custom SNI, SANs, renegotiation.
    tls = (
        "{enabled: true, allowRenegotiation: true, serverName: custom, caCert: {secret: ca}, "
        "clientCert: {secret: cert}, clientKey: {inline: " + base64.b64encode(b"k").decode() + "}}"
    )
    full = _context(
        external_cluster(
            Destination("ext"),
            "tcp",
            [external_endpoint(_service("httpbin.org:3000", tls), secrets)],
        )
    )
    assert (full.sni, full.allow_renegotiation) == ("custom", True)
    (certificate,) = full.common_tls_context.tls_certificates
    assert certificate.certificate_chain.inline_bytes == b"clientcert"
    assert certificate.private_key.inline_bytes == b"k"
    validation = full.common_tls_context.validation_context
    assert validation.trusted_ca.inline_bytes == b"cacert"
    assert [(m.san_type, m.matcher.exact) for m in validation.match_typed_subject_alt_names] == [
        (common_pb2.SubjectAltNameMatcher.DNS, "custom"),
        (common_pb2.SubjectAltNameMatcher.IP_ADDRESS, "custom"),
    ]
    # "... skipHostnameVerification": no SAN matchers.
    skip = tls.replace("serverName: custom", "skipHostnameVerification: true")
    skipped = _context(
        external_cluster(
            Destination("ext"),
            "tcp",
            [external_endpoint(_service("httpbin.org:3000", skip), secrets)],
        )
    )
    assert skipped.sni == "httpbin.org"
    assert not skipped.common_tls_context.validation_context.match_typed_subject_alt_names


def test_the_config_dump_redacts_an_inline_client_key() -> None:
    tls = (
        "{enabled: true, clientCert: {inlineString: CERT}, clientKey: {inline: "
        + base64.b64encode(KEY).decode()
        + "}}"
    )
    no_secrets: dict[str, bytes] = {}
    endpoint = external_endpoint(_service("httpbin.org:443", tls), no_secrets.get)
    cluster = external_cluster(Destination("ext"), "http", [endpoint])
    resource = versioned(types.CLUSTER, cluster.name, cluster)
    dump = config_dump(lambda t: [resource] if t == types.CLUSTER else [])
    text = str(dump)
    assert "CLIENTKEY" not in text
    assert base64.b64encode(KEY).decode() not in text
    assert base64.b64encode(b"[redacted]").decode() in text
    assert base64.b64encode(b"CERT").decode() in text  # the certificate stays


def test_endpoints_are_grouped_by_zone_and_selected_by_the_subset() -> None:
    def service(name: str, address: str, tags: str) -> ExternalService:
        resource = decode_one(
            f"type: ExternalService\nmesh: default\nname: {name}\nnetworking:\n"
            f"  address: {address}\ntags: {{kuma.io/service: ext, {tags}}}\n"
        )
        assert isinstance(resource, ExternalService)
        return resource

    none: dict[str, bytes] = {}
    endpoints = [
        external_endpoint(service("a", "10.0.0.2:80", "kuma.io/zone: zone-2"), none.get),
        external_endpoint(service("b", "10.0.0.1:80", "version: v1"), none.get),
        external_endpoint(service("c", "10.0.0.3:80", "version: v2"), none.get),
    ]
    cluster = external_cluster(Destination("ext"), "tcp", endpoints)
    assert cluster.type == cluster_pb2.Cluster.STATIC
    groups = [
        (g.locality.zone, [e.endpoint.address.socket_address.address for e in g.lb_endpoints])
        for g in cluster.load_assignment.endpoints
    ]
    assert groups == [("", ["10.0.0.1", "10.0.0.3"]), ("zone-2", ["10.0.0.2"])]
    v1 = external_cluster(Destination("ext", (("version", "v1"),)), "tcp", endpoints)
    assert v1.name.startswith("ext-")
    (only,) = v1.load_assignment.endpoints
    assert [e.endpoint.address.socket_address.address for e in only.lb_endpoints] == ["10.0.0.1"]


def test_external_services_alike_in_address_and_tags_both_count() -> None:
    """Two ExternalServices of one service with the same address and tags (it crashed the
    sort once): both are endpoints, in name order."""
    twins = {
        name: decode_one(
            f"type: ExternalService\nmesh: default\nname: {name}\nnetworking:\n"
            "  address: example.com:443\ntags: {kuma.io/service: ext}\n"
        )
        for name in ("es-2", "es-1")
    }
    endpoints = resolve_endpoints(twins, {}, "default")  # type: ignore[arg-type]
    assert len(endpoints) == 2
    cluster = external_cluster(Destination("ext"), "tcp", endpoints)
    (group,) = cluster.load_assignment.endpoints
    assert len(group.lb_endpoints) == 2

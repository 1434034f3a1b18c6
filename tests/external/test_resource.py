"""ExternalService as a resource: its document form, what it never shows, how it travels to
zones and who authors it (Kuma's own validator cases run in tests/resources/test_kuma_cases.py)."""

from __future__ import annotations

import base64

import pytest

from kuma.kds import codec, mapping
from kuma.multizone import GLOBAL_READ_ONLY_MESSAGE, ZONE_READ_ONLY_MESSAGE, Authoring
from kuma.resources import DecodeError, ExternalService, decode_one, encode_yaml, validate

KEY = "-----BEGIN PRIVATE KEY-----\nTOPSECRETKEYMATERIAL\n-----END PRIVATE KEY-----\n"
TLS = f"""\
type: ExternalService
mesh: default
name: httpbin
networking:
  address: httpbin.org:443
  disableHostDNSEntry: true
  tls:
    enabled: true
    allowRenegotiation: false
    serverName: httpbin.org
    skipHostnameVerification: true
    caCert:
      inline: {base64.b64encode(b"CA PEM").decode()}
    clientCert:
      secret: client-cert
    clientKey:
      inlineString: "{KEY.replace(chr(10), chr(92) + "n")}"
tags:
  kuma.io/service: httpbin
  kuma.io/protocol: http
"""


def test_the_document_round_trips_exactly() -> None:
    service = decode_one(TLS)
    assert isinstance(service, ExternalService)
    assert validate(service) == []
    assert service.service == "httpbin"
    networking = service.networking
    assert networking is not None
    assert networking.tls is not None
    assert networking.disable_host_dns_entry
    assert networking.tls.ca_cert is not None
    assert networking.tls.ca_cert.inline == b"CA PEM"
    assert networking.tls.client_key is not None
    assert networking.tls.client_key.inline_string == KEY
    assert decode_one(encode_yaml([service])) == service


def test_inline_values_never_show() -> None:
    service = decode_one(TLS)
    for text in (repr(service), str(service)):
        assert "TOPSECRET" not in text
        assert "CA PEM" not in text
        assert base64.b64encode(b"CA PEM").decode() not in text
        assert "client-cert" in text  # a Secret's name is not secret


def test_bad_base64_is_named_without_its_value() -> None:
    with pytest.raises(DecodeError) as caught:
        decode_one(TLS.replace(base64.b64encode(b"CA PEM").decode(), "not*base64*S3CR3T"))
    assert "networking.tls.caCert.inline" in str(caught.value)
    assert "S3CR3T" not in str(caught.value)


def test_a_data_source_names_one_source() -> None:
    doc = TLS.replace("secret: client-cert", "secret: client-cert\n      file: /etc/cert.pem")
    assert [(v.field, v.message) for v in validate(decode_one(doc))] == [
        ("networking.tls.clientCert", "only one of secret, file, inline, inlineString can be set")
    ]


def test_name_and_mesh_follow_kuma_meta_rules() -> None:
    doc = TLS.replace("name: httpbin", "name: Bad_Name").replace("mesh: default", "mesh: x!")
    fields = [v.field for v in validate(decode_one(doc))]
    assert fields[:2] == ["name", "mesh"]


def test_goes_down_to_zones_under_kuma_hashed_name_and_travels_exactly() -> None:
    service = decode_one(TLS)
    assert isinstance(service, ExternalService)
    down = mapping.to_zone(service)
    assert isinstance(down, ExternalService)
    assert down.name == mapping.hashed_name("default", "httpbin")
    assert down.labels == {"kuma.io/origin": "global"}
    assert down.networking == service.networking
    assert down.tags == service.tags
    sent = codec.encode(down)
    assert codec.decode(sent.type_url, sent.name, sent.body) == down
    assert "ExternalService" in mapping.global_kinds()
    # After the Secrets an ExternalService may reference.
    kinds = mapping.global_kinds()
    assert kinds.index("Secret") < kinds.index("ExternalService")
    assert mapping.to_global(service, "zone-1") is None


def test_authored_on_global_refused_on_a_federated_zone() -> None:
    assert Authoring(mode="global").refusal("ExternalService") is None
    zone = Authoring(mode="zone", zone="zone-1", federated=True)
    assert zone.refusal("ExternalService") == ZONE_READ_ONLY_MESSAGE
    assert Authoring(mode="zone", zone="zone-1").refusal("ExternalService") is None
    assert Authoring().refusal("ExternalService") is None
    assert GLOBAL_READ_ONLY_MESSAGE != ZONE_READ_ONLY_MESSAGE

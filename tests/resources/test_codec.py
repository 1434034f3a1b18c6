"""The universal YAML/JSON codec: lossless round trips, and shape errors that say where."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kuma.resources import (
    RESOURCE_TYPES,
    DecodeError,
    decode,
    decode_one,
    encode_json,
    encode_yaml,
    from_document,
    to_document,
)
from kuma.resources.codec import line_of
from kuma.resources.model import (
    Dataplane,
    Mesh,
    ResourceMeta,
    StoredResource,
    ZoneEgress,
    ZoneIngress,
)

ALL_TYPES = ", ".join(sorted(RESOURCE_TYPES))

DATAPLANE = """type: Dataplane
mesh: default
name: web-01
networking:
  address: 192.168.0.1
  advertisedAddress: 10.0.0.1
  inbound:
  - port: 8080
    servicePort: 80
    serviceAddress: 127.0.0.1
    tags: {kuma.io/service: web, kuma.io/protocol: http, version: v1}
    health: {ready: false}
    serviceProbe: {interval: 10s, timeout: 2s, unhealthyThreshold: 3, healthyThreshold: 1, tcp: {}}
    state: NotReady
  outbound:
  - {port: 10001, tags: {kuma.io/service: backend}}
  - {port: 10002, address: 127.0.0.2, tags: {kuma.io/service: db}}
  gateway: {tags: {kuma.io/service: edge}, type: BUILTIN}
  transparentProxying: {redirectPortInbound: 15006, redirectPortOutbound: 15001,
                        directAccessServices: [a], reachableServices: [b, c]}
  admin: {port: 9901}
probes: {port: 9000, endpoints: [{inboundPort: 8080, inboundPath: /health, path: /8080/health}]}
"""
ZONE_INGRESS = """type: ZoneIngress
name: zi-1
zone: east
networking: {address: 192.168.0.1, advertisedAddress: 10.0.0.1, port: 10001,
             advertisedPort: 1234, admin: {port: 9902}}
availableServices:
- {tags: {kuma.io/service: backend}, instances: 2, mesh: default, externalService: true}
"""
ZONE_EGRESS = """type: ZoneEgress
name: ze-1
zone: east
networking: {address: 192.168.0.2, port: 10002, admin: {port: 9903}}
"""
MESH = """type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends: [{name: ca-1, type: builtin}]
skipCreatingInitialPolicies: ['*']
"""
ALL = [DATAPLANE, ZONE_INGRESS, ZONE_EGRESS, MESH]
ALL_IDS = ["dataplane", "zone-ingress", "zone-egress", "mesh"]


@pytest.mark.parametrize("text", ALL, ids=ALL_IDS)
def test_yaml_round_trip(text: str) -> None:
    (resource,) = decode(text)
    assert decode(encode_yaml([resource])) == [resource]


@pytest.mark.parametrize("text", ALL, ids=ALL_IDS)
def test_json_round_trip(text: str) -> None:
    resource = decode_one(text)
    assert decode_one(encode_json(resource)) == resource


def test_documents_decode_to_their_types_with_every_field() -> None:
    dataplane, ingress, egress, mesh = decode("---\n".join(ALL))
    assert isinstance(dataplane, Dataplane)
    assert dataplane.networking is not None
    assert dataplane.networking.inbound[0].service_probe is not None
    assert dataplane.networking.inbound[0].service_probe.unhealthy_threshold == 3
    assert dataplane.networking.outbound[1].effective_address == "127.0.0.2"
    assert dataplane.probes is not None
    assert dataplane.probes.endpoints[0].path == "/8080/health"
    assert isinstance(ingress, ZoneIngress)
    assert ingress.available_services[0].external_service
    assert isinstance(egress, ZoneEgress)
    assert egress.networking is not None
    assert egress.networking.admin is not None
    assert egress.networking.admin.port == 9903
    assert isinstance(mesh, Mesh)
    assert mesh.mtls == {
        "enabledBackend": "ca-1",
        "backends": [{"name": "ca-1", "type": "builtin"}],
    }


def test_multi_document_yaml_round_trip() -> None:
    resources = decode("---\n".join(ALL), source="all.yaml")
    assert [r.TYPE for r in resources] == ["Dataplane", "ZoneIngress", "ZoneEgress", "Mesh"]
    assert decode(encode_yaml(resources)) == resources


def test_json_array_round_trip() -> None:
    resources = decode("---\n".join(ALL))
    array = b"[" + b",".join(encode_json(r) for r in resources) + b"]"
    assert decode(array) == resources


def test_yaml_flow_mapping_is_not_mistaken_for_json() -> None:
    assert decode("{type: Mesh, name: default}") == [Mesh(name="default")]


def test_encoding_keeps_what_the_user_wrote_and_kuma_key_order() -> None:
    assert encode_yaml(decode("type: Mesh\nname: default\n")) == "type: Mesh\nname: default\n"
    dataplane = decode_one(
        "name: web\nnetworking: {address: 1.1.1.1, inbound: [{port: 80, tags: {a: b}}]}\n"
        "type: Dataplane\n"
    )
    # mesh defaults to "default" and is printed anyway: a mesh-scoped resource always names it.
    assert list(to_document(dataplane)) == ["type", "mesh", "name", "networking"]
    assert encode_yaml([dataplane]) == (
        "type: Dataplane\nmesh: default\nname: web\nnetworking:\n  address: 1.1.1.1\n"
        "  inbound:\n  - port: 80\n    tags:\n      a: b\n"
    )


def test_meta_times_are_printed_and_ignored_on_input() -> None:
    moment = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    stored = StoredResource(Mesh(name="default"), ResourceMeta("1", moment, moment))
    text = encode_yaml([stored])
    assert "creationTime: '2024-05-01T12:00:00Z'" in text
    assert "modificationTime: '2024-05-01T12:00:00Z'" in text
    assert decode(text) == [Mesh(name="default")]


# --- shape errors ----------------------------------------------------------------------------

UNKNOWN_INBOUND_KEY = """type: Dataplane
mesh: default
name: web
networking:
  address: 1.1.1.1
  inbound:
  - port: 8080
    bogus: 1
    tags: {kuma.io/service: web}
"""
PORT_AS_STRING = UNKNOWN_INBOUND_KEY.replace("port: 8080\n    bogus: 1", 'port: "8080"')
SECOND_DOCUMENT_BAD = """type: Mesh
name: default
---
type: ZoneEgress
name: ze
networking:
  address: 1.1.1.1
  port: 10002
  admn: {port: 1}
"""


@pytest.mark.parametrize(
    ("text", "field", "reason", "line", "document"),
    [
        pytest.param(
            UNKNOWN_INBOUND_KEY, "networking.inbound[0].bogus", "unknown field", 8, None,
            id="unknown-key",
        ),
        pytest.param(
            PORT_AS_STRING, "networking.inbound[0].port", "Expected `int`, got `str`", 7, None,
            id="wrong-type",
        ),
        pytest.param(
            SECOND_DOCUMENT_BAD, "networking.admn", "unknown field", 9, 1, id="second-document"
        ),
        pytest.param(
            "name: x\n", "type",
            f"must be one of {ALL_TYPES}", 1,
            None, id="missing-type",
        ),
        pytest.param(
            "name: x\ntype: Foo\n", "type",
            f"Invalid value 'Foo'; must be one of {ALL_TYPES}", 2,
            None, id="unknown-type",
        ),
        pytest.param(
            "type: ZoneIngress\nname: zi\navailableServices:\n- instances: many\n",
            "availableServices[0].instances", "Expected `int`, got `str`", 4, None,
            id="wrong-type-in-list",
        ),
        pytest.param(
            '[{"type": "Mesh", "name": "a"},\n {"type": "Mesh", "name": "b", "bogus": 1}]',
            "bogus", "unknown field", None, 1, id="json-array-element",
        ),
    ],
)  # fmt: skip
def test_shape_errors_name_field_line_and_document(
    text: str, field: str, reason: str, line: int | None, document: int | None
) -> None:
    with pytest.raises(DecodeError) as raised:
        decode(text, source="input.yaml")
    error = raised.value
    assert (error.field, error.reason, error.line, error.document) == (
        field,
        reason,
        line,
        document,
    )
    assert error.source == "input.yaml"
    assert str(error).startswith("input.yaml")
    assert f"{field}: {reason}" in str(error)


@pytest.mark.parametrize(
    ("text", "line", "reason_start"),
    [
        pytest.param("type: Mesh\nname: [\n", 3, "invalid YAML", id="yaml-syntax"),
        pytest.param('{"type": "Mesh",\n "name": "a" x}', 2, "invalid JSON", id="json-syntax"),
        pytest.param("just a string\n", 1, "a resource must be a mapping, got str", id="scalar"),
    ],
)
def test_unparseable_input_names_the_line(text: str, line: int, reason_start: str) -> None:
    with pytest.raises(DecodeError) as raised:
        decode(text, source="in")
    assert raised.value.reason.startswith(reason_start)
    assert raised.value.line == line
    assert str(raised.value).startswith(f"in:{line}: ")


def test_decode_one_wants_exactly_one_resource() -> None:
    with pytest.raises(DecodeError, match="expected exactly one resource, found 2"):
        decode_one("type: Mesh\nname: a\n---\ntype: Mesh\nname: b\n")
    with pytest.raises(DecodeError, match="found 0"):
        decode_one("")


def test_empty_documents_are_skipped() -> None:
    assert decode("---\ntype: Mesh\nname: a\n---\n---\n") == [Mesh(name="a")]


def test_null_scalars_are_their_defaults_as_in_kuma() -> None:
    """Kuma decodes through protobuf's JSON mapping: a null scalar is the field's default, so
    ``version:`` (YAML null) is an empty tag value, a validation error with Kuma's message."""
    document = {
        "type": "Dataplane",
        "name": "dp",
        "networking": {
            "address": "10.0.0.1",
            "inbound": [{"port": 80, "tags": {"kuma.io/service": "web", "version": None}}],
        },
    }
    resource = from_document(document)
    assert isinstance(resource, Dataplane)
    assert resource.networking is not None
    assert resource.networking.inbound[0].tags["version"] == ""
    # The caller's document is left as it was.
    assert document["networking"]["inbound"][0]["tags"]["version"] is None  # type: ignore[index]


def test_null_where_a_structure_belongs_is_still_an_error() -> None:
    with pytest.raises(DecodeError) as caught:
        from_document({"type": "Dataplane", "name": "dp", "networking": {"inbound": [None]}})
    assert caught.value.field == "networking.inbound[0]"


def test_lines_of_kumas_paths_that_do_not_spell_the_documents_keys() -> None:
    """Validation reports Kuma's paths (``availableService[i]``, a backend's ``config``); the
    line is still the one of the document's key."""
    ingress = (
        "type: ZoneIngress\nname: zi\nnetworking:\n  address: 1.2.3.4\n  port: 10001\n"
        "availableServices:\n- tags: {a: b}\n- tags:\n    x: y\n"
    )
    assert line_of(ingress, 0, "availableService[1].tags") == 9
    assert line_of(ingress, 0, "networking.address.address") == 4
    mesh = (
        "type: Mesh\nname: m\nlogging:\n  backends:\n  - name: x\n    type: tcp\n"
        "    conf:\n      address: ''\n"
    )
    assert line_of(mesh, 0, "logging.backends[0].config.address") == 8

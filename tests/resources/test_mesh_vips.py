"""MeshVips: the stored VIP allocation of one mesh (codec round trip and validation)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kuma.resources import (
    MeshVips,
    ResourceMeta,
    StoredResource,
    ValidationError,
    decode,
    decode_one,
    encode_json,
    encode_yaml,
)
from kuma.resources.validation import check, validate

DOCUMENT = """type: MeshVips
name: default
vips:
  api: 240.0.0.2
  web: 240.12.3.4
"""


def test_yaml_and_json_round_trip() -> None:
    resource = decode_one(DOCUMENT)
    assert resource == MeshVips(name="default", vips={"api": "240.0.0.2", "web": "240.12.3.4"})
    assert encode_yaml([resource]) == DOCUMENT
    assert decode(encode_json(resource)) == [resource]
    assert not validate(resource)


def test_stored_round_trip_keeps_the_meta() -> None:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    stored = StoredResource(decode_one(DOCUMENT), ResourceMeta("7", when, when))
    (back,) = decode(encode_yaml([stored]))
    assert back == stored.resource


def test_empty_allocation_is_valid() -> None:
    assert not validate(MeshVips(name="default"))


@pytest.mark.parametrize(
    ("vips", "violations"),
    [
        ({"web": "10.0.0.1"}, [('vips["web"]', "must be inside 240.0.0.0/4")]),
        ({"web": "not-an-ip"}, [('vips["web"]', "must be an IPv4 address")]),
        ({"web": "fd00::1"}, [('vips["web"]', "must be an IPv4 address")]),
        (
            {"a": "240.0.0.1", "b": "240.0.0.1"},
            [('vips["b"]', 'duplicates the VIP of "a"')],
        ),
        (
            {"bad name": "240.0.0.1", "": "240.0.0.2"},
            [
                (
                    'vips[""]',
                    "service name: tag value must consist of alphanumeric characters, dots, "
                    "dashes and underscores",
                ),
                (
                    'vips["bad name"]',
                    "service name: tag value must consist of alphanumeric characters, dots, "
                    "dashes and underscores",
                ),
            ],
        ),
    ],
)
def test_invalid_allocations(vips: dict[str, str], violations: list[tuple[str, str]]) -> None:
    found = validate(MeshVips(name="default", vips=vips))
    assert [(v.field, v.message) for v in found] == violations


def test_name_is_a_mesh_name() -> None:
    with pytest.raises(ValidationError, match=r"^MeshVips Not_A_Mesh: name: invalid characters"):
        check(MeshVips(name="Not_A_Mesh"))

"""Building blocks of the validation rules: remembered valid values, Go durations."""

from __future__ import annotations

from textwrap import dedent

import pytest

from kuma.resources import decode
from kuma.resources.model import Resource
from kuma.resources.validation import parse_duration_ns, validate

VALUE_CHARS = "tag value must consist of alphanumeric characters, dots, dashes and underscores"
DATAPLANE = "type: Dataplane\nmesh: default\nname: dp-1\nnetworking:\n  address: 10.0.0.1\n"


def one(text: str) -> Resource:
    (resource,) = decode(dedent(text))
    return resource


def test_remembered_valid_values_are_still_checked_in_a_new_combination() -> None:
    # The validator remembers tag keys and values it found valid (a fast path for thousands of
    # Dataplanes); remembered parts in a new combination must not hide a broken rule.
    good = "  inbound:\n  - {port: 8080, tags: {kuma.io/service: web, version: v1}}\n"
    assert validate(one(DATAPLANE + good)) == []
    bad = (
        "  inbound:\n  - {port: 8080, tags: {kuma.io/service: 'w b', version: ''}}\n"
        "  - {port: 8081, tags: {web: v1, 'v1': web}}\n"
    )
    assert [(v.field, v.message) for v in validate(one(DATAPLANE + bad))] == [
        ('networking.inbound[0].tags["kuma.io/service"]', VALUE_CHARS),
        ('networking.inbound[0].tags["version"]', "tag value must be non-empty"),
        ('networking.inbound[1].tags["kuma.io/service"]', "tag has to exist"),
    ]


@pytest.mark.parametrize(
    ("text", "nanoseconds"),
    [
        ("10s", 10_000_000_000),
        ("1m30s", 90_000_000_000),
        ("500ms", 500_000_000),
        ("1.5h", 5_400_000_000_000),
        (".5us", 500),
        ("2\u00b5s", 2_000),
        ("1h2m3s4ms5us6ns", 3_723_004_005_006),
        ("0", 0),
        ("-1s", -1_000_000_000),
        ("+2ns", 2),
    ],
)
def test_go_durations_parse(text: str, nanoseconds: int) -> None:
    assert parse_duration_ns(text) == nanoseconds


@pytest.mark.parametrize("text", ["", "10", "1sec", "s", ".s", "1.2.3s", "1 s", "9999999999h"])
def test_malformed_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration_ns(text)

"""Kuma's validation rules for ZoneIngress, ZoneEgress and Mesh (tables as in
test_validation.py: (field, message) pairs in reporting order)."""

from __future__ import annotations

from textwrap import dedent

import pytest

from kuma.resources import ValidationError, decode
from kuma.resources.model import Resource
from kuma.resources.validation import check, validate

RFC1123 = (
    "invalid characters. A lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
    "characters, '-' or '.', and must start and end with an alphanumeric character"
)
PORT_RANGE = "port must be in the range [1, 65535]"
MISSING_SERVICE = 'mandatory tag "kuma.io/service" is missing'


def one(text: str) -> Resource:
    (resource,) = decode(dedent(text))
    return resource


VALID = [
    pytest.param(
        """type: ZoneIngress
name: zi-1
zone: east
networking: {address: 192.168.0.1, advertisedAddress: 10.0.0.1, port: 10001,
             advertisedPort: 1234, admin: {port: 10001}}
availableServices:
- {tags: {kuma.io/service: backend, version: "1"}, instances: 2, mesh: default}
""",
        id="zone-ingress",
    ),
    pytest.param(
        "type: ZoneIngress\nname: zi-1\n"
        "networking: {address: 192.168.0.1, advertisedAddress: '::ffff:0a00:0001',"
        " port: 10001, advertisedPort: 1234}\n",
        id="zone-ingress-ipv6-advertised",
    ),
    pytest.param(
        "type: ZoneIngress\nname: zi-1\nnetworking: {port: 10001}\n",
        id="zone-ingress-without-addresses",
    ),
    pytest.param(
        "type: ZoneEgress\nname: ze-1\nzone: east\n"
        "networking: {address: 192.168.0.1, port: 10002, admin: {port: 10002}}\n",
        id="zone-egress",
    ),
    pytest.param("type: Mesh\nname: default\n", id="mesh-empty-spec"),
    pytest.param(
        "type: Mesh\nname: prod.eu-1\n"
        "mtls: {enabledBackend: ca-1, backends: [{name: ca-1, type: builtin}]}\n",
        id="mesh-with-policies",
    ),
]


@pytest.mark.parametrize("text", VALID)
def test_valid_resources_have_no_violations(text: str) -> None:
    resource = one(text)
    assert validate(resource) == []
    check(resource)


INVALID = [
    pytest.param(
        f"type: Mesh\nname: {'a' * 254}\n",
        [("name", "value length must less or equal 253")],
        id="mesh-name-too-long",
    ),
    pytest.param("type: Mesh\nname: -default\n", [("name", RFC1123)], id="mesh-name-dash"),
    # --- zone proxies -------------------------------------------------------------------------
    pytest.param(
        # Kuma: "invalid advertised address, port and available service" (paths differ: see
        # kuma/resources/validation/zone.py).
        """type: ZoneIngress
name: zi-1
networking: {address: 192.168.0.1, advertisedAddress: "!@#", port: 10001, advertisedPort: 100000}
availableServices:
- tags: {kuma.io/service: backend, version: "1", region: us}
- tags: {version: v2, region: eu}
- tags: {kuma.io/service: ""}
- tags: {version: ""}
""",
        [
            (
                "networking.advertisedAddress.address",
                "address has to be valid IP address or domain name",
            ),
            ("networking.advertisedPort", PORT_RANGE),
            ("availableService[1].tags", MISSING_SERVICE),
            ('availableService[2].tags["kuma.io/service"]', "tag value must be non-empty"),
            ('availableService[3].tags["version"]', "tag value must be non-empty"),
            ("availableService[3].tags", MISSING_SERVICE),
        ],
        id="zone-ingress-many",
    ),
    pytest.param(
        "type: ZoneIngress\nname: zi-1\n"
        "networking: {address: 127.0.0.1, port: 10001, advertisedPort: 1234,"
        " admin: {port: 10001}}\n",
        [
            ("networking.admin.port", "must differ from port"),
            ("networking.advertisedAddress", "has to be defined with advertisedPort"),
        ],
        id="zone-ingress-admin-and-advertised-port-alone",
    ),
    pytest.param(
        "type: ZoneIngress\nname: zi_1\n"
        "networking: {address: 0.0.0.0, advertisedAddress: 1.2.3.4}\n",
        [
            ("name", RFC1123),
            ("networking.advertisedPort", "has to be defined with advertisedAddress"),
            ("networking.address.address", "must not be 0.0.0.0 or ::"),
            ("networking.port", PORT_RANGE),
        ],
        id="zone-ingress-advertised-address-alone",
    ),
    pytest.param(
        "type: ZoneIngress\nname: zi-1\n", [("networking.port", PORT_RANGE)], id="zone-ingress-bare"
    ),
    pytest.param(
        "type: ZoneEgress\nname: ze-1\nnetworking: {address: 0.0.0.0, port: 10002,"
        " admin: {port: 10002}}\n",
        [
            ("networking.admin.port", "must differ from port"),
            ("networking.address.address", "must not be 0.0.0.0 or ::"),
        ],
        id="zone-egress-admin-on-wildcard",
    ),
    pytest.param(
        "type: ZoneEgress\nname: ze-1\nnetworking: {address: 'x y', admin: {port: 99999}}\n",
        [
            ("networking.address.address", "address has to be valid IP address or domain name"),
            ("networking.port", PORT_RANGE),
            ("networking.admin.port", PORT_RANGE),
        ],
        id="zone-egress-address-and-ports",
    ),
]


@pytest.mark.parametrize(("text", "expected"), INVALID)
def test_invalid_resources_report_exactly_these_violations(
    text: str, expected: list[tuple[str, str]]
) -> None:
    assert [(v.field, v.message) for v in validate(one(text))] == expected


def test_check_names_a_global_resource_without_mesh() -> None:
    with pytest.raises(ValidationError, match=r"^ZoneEgress ze-1: networking\.port: port must"):
        check(one("type: ZoneEgress\nname: ze-1\n"))

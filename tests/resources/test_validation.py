"""Kuma's validation rules: valid resources pass, invalid ones report exactly Kuma's violations.

Expected lists are (field, message) pairs in reporting order. Cases marked "Kuma:" mirror a case
of Kuma's own validator tests; "not in Kuma" marks the rules this project adds.
"""

from __future__ import annotations

from textwrap import dedent

import pytest

from kuma.resources import ValidationError, decode
from kuma.resources.model import Resource
from kuma.resources.validation import check, validate

DP = "type: Dataplane\nmesh: default\nname: dp-1\n"
# One healthy inbound, for cases about something else.
INBOUND = "  inbound:\n  - {port: 8080, tags: {kuma.io/service: web}}\n"
RFC1123 = (
    "invalid characters. A lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
    "characters, '-' or '.', and must start and end with an alphanumeric character"
)
LEGACY_NAME_MESSAGE = (
    "invalid characters. Valid characters are numbers, lowercase latin letters and "
    "'-', '_', '.' symbols."
)
PORT_RANGE = "port must be in the range [1, 65535]"
MISSING_SERVICE = 'mandatory tag "kuma.io/service" is missing'
DIFFER = "serviceAddress and servicePort has to differ from address and port"
ALLOWED = "Allowed values: grpc, http, http2, kafka, tcp"
KEY_CHARS = (
    "tag name must consist of alphanumeric characters, dots, dashes, slashes and underscores"
)
VALUE_CHARS = "tag value must consist of alphanumeric characters, dots, dashes and underscores"
DURATION = 'must be a valid duration such as "10s", "1m30s" or "500ms"'


def one(text: str) -> Resource:
    (resource,) = decode(dedent(text))
    return resource


def pairs(resource: Resource) -> list[tuple[str, str]]:
    return [(v.field, v.message) for v in validate(resource)]


VALID = [
    pytest.param(
        DP
        + """networking:
  address: 192.168.0.1
  advertisedAddress: 10.0.0.1
  inbound:
  - port: 8080
    servicePort: 80
    serviceAddress: 127.0.0.1
    tags: {kuma.io/service: web, kuma.io/protocol: http, version: v1, team: a.b_c-d:e}
    health: {ready: true}
    serviceProbe: {interval: 10s, timeout: 1m30s, unhealthyThreshold: 3, healthyThreshold: 1}
  - {port: 8081, address: 192.168.0.2, serviceAddress: 192.168.0.2, servicePort: 8082,
     tags: {kuma.io/service: api, kuma.io/protocol: GRPC}}
  outbound:
  - {port: 10001, tags: {kuma.io/service: backend}}
  - {port: 10001, address: 127.0.0.2, tags: {kuma.io/service: db, kuma.io/zone: east}}
  admin: {port: 9901}
probes: {port: 9000, endpoints: [{inboundPort: 8080, inboundPath: /health, path: /8080/health}]}
""",
        id="standard",
    ),
    pytest.param(DP + "networking:\n  address: example.com\n" + INBOUND, id="dns-address"),
    pytest.param(
        DP + "networking:\n  address: fd00::1\n  inbound:\n"
        "  - {port: 8080, address: '::1', serviceAddress: '::ffff:127.0.0.1',"
        " tags: {kuma.io/service: web}}\n",
        id="ipv6",
    ),
    pytest.param(
        # Kuma: the listener is on 192.168.0.2, the application on 192.168.0.1: no clash (Kuma
        # refuses this one because it compares serviceAddress with networking.address).
        DP + "networking:\n  address: 192.168.0.1\n  inbound:\n"
        "  - {port: 8080, address: 192.168.0.2, serviceAddress: 192.168.0.1,"
        " tags: {kuma.io/service: web}}\n",
        id="service-address-on-node-address-inbound-elsewhere",
    ),
    pytest.param(
        # Kuma: the admin port may equal a port on another interface; admin is on 127.0.0.1.
        DP
        + "networking:\n  address: 192.168.0.1\n  admin: {port: 8080}\n"
        + INBOUND
        + "  outbound:\n  - {port: 8080, address: 192.168.0.2, tags: {kuma.io/service: db}}\n",
        id="admin-port-on-other-interface",
    ),
    pytest.param(
        DP + "networking:\n  address: 10.0.0.1\n"
        "  gateway: {type: DELEGATED, tags: {kuma.io/service: edge, kuma.io/protocol: tcp}}\n"
        "  outbound:\n  - {port: 10001, tags: {kuma.io/service: backend}}\n",
        id="gateway-delegated",
    ),
    pytest.param(
        DP + "networking:\n  address: 10.0.0.1\n"
        "  gateway: {type: BUILTIN, tags: {kuma.io/service: edge}}\n",
        id="gateway-builtin",
    ),
    pytest.param(
        DP + "networking:\n  address: 10.0.0.1\n" + INBOUND + "  transparentProxying:\n"
        "    {redirectPortInbound: 15006, redirectPortOutbound: 15001, ipFamilyMode: DualStack,"
        " reachableServices: [backend]}\n",
        id="transparent-proxy",
    ),
]


@pytest.mark.parametrize("text", VALID)
def test_valid_resources_have_no_violations(text: str) -> None:
    resource = one(text)
    assert validate(resource) == []
    check(resource)


def dp_networking(body: str) -> str:
    return DP + "networking:\n" + body


INVALID = [
    # --- networking ---------------------------------------------------------------------------
    pytest.param(DP, [("networking", "must be defined")], id="no-networking"),
    pytest.param(
        DP + "networking: {}\n",
        [
            ("networking", "has to contain at least one inbound interface or gateway"),
            ("networking.address", "address can't be empty"),
        ],
        id="empty-networking",
    ),
    pytest.param(
        dp_networking("  address: 0.0.0.0\n" + INBOUND),
        [("networking.address", "must not be 0.0.0.0 or ::")],
        id="address-ipv4-wildcard",
    ),
    pytest.param(
        dp_networking("  address: '::'\n" + INBOUND),
        [("networking.address", "must not be 0.0.0.0 or ::")],
        id="address-ipv6-wildcard",
    ),
    pytest.param(
        dp_networking("  address: '0:0::0'\n" + INBOUND),
        [("networking.address", "must not be 0.0.0.0 or ::")],
        id="address-ipv6-wildcard-long-form",
    ),
    pytest.param(
        dp_networking("  address: '!@#'\n" + INBOUND),
        [("networking.address", "address has to be valid IP address or domain name")],
        id="address-invalid",
    ),
    pytest.param(
        dp_networking("  address: 10.0.0.1\n  advertisedAddress: 'a b'\n" + INBOUND),
        [("networking.advertisedAddress", "address has to be valid IP address or domain name")],
        id="advertised-address-invalid",
    ),
    # --- inbounds -----------------------------------------------------------------------------
    pytest.param(
        dp_networking(
            "  address: 10.0.0.1\n  inbound:\n"
            "  - {port: 0, servicePort: 0, tags: {kuma.io/service: a}}\n"
            "  - {port: 65536, servicePort: 70000, address: not-an-ip,"
            " tags: {kuma.io/service: b}}\n"
        ),
        [
            ("networking.inbound[0].port", PORT_RANGE),
            ("networking.inbound[0].servicePort", PORT_RANGE),
            ("networking.inbound[1].port", PORT_RANGE),
            ("networking.inbound[1].servicePort", PORT_RANGE),
            ("networking.inbound[1].address", "address has to be valid IP address"),
        ],
        id="inbound-ports-and-address",
    ),
    pytest.param(
        dp_networking(
            "  address: 192.168.0.1\n  inbound:\n"
            "  - {port: 10001, serviceAddress: INVALID, tags: {kuma.io/service: a}}\n"
            "  - {port: 10002, serviceAddress: 192.168.0.1, tags: {kuma.io/service: b}}\n"
            "  - {port: 10003, address: 192.168.0.2, serviceAddress: 192.168.0.2,"
            " servicePort: 10003, tags: {kuma.io/service: c}}\n"
        ),
        [
            ("networking.inbound[0].serviceAddress", "serviceAddress has to be valid IP address"),
            ("networking.inbound[1].serviceAddress", DIFFER),
            ("networking.inbound[2].serviceAddress", DIFFER),
        ],
        id="inbound-service-address",
    ),
    pytest.param(
        dp_networking(
            "  address: 10.0.0.1\n  inbound:\n"
            "  - {port: 8080, tags: {version: v1}}\n"
            "  - {port: 8081, tags: {kuma.io/service: b, version: ''}}\n"
            "  - {port: 8082, tags: {kuma.io/service: c, kuma.io/protocol: ''}}\n"
            "  - {port: 8083, tags: {kuma.io/service: d, kuma.io/protocol: not-yet-supported}}\n"
        ),
        [
            ('networking.inbound[0].tags["kuma.io/service"]', "tag has to exist"),
            ('networking.inbound[1].tags["version"]', "tag value must be non-empty"),
            (
                'networking.inbound[2].tags["kuma.io/protocol"]',
                f'tag "kuma.io/protocol" has an invalid value "". {ALLOWED}',
            ),
            ('networking.inbound[2].tags["kuma.io/protocol"]', "tag value must be non-empty"),
            (
                'networking.inbound[3].tags["kuma.io/protocol"]',
                f'tag "kuma.io/protocol" has an invalid value "not-yet-supported". {ALLOWED}',
            ),
        ],
        id="inbound-service-and-protocol-tags",
    ),
    pytest.param(
        dp_networking(
            "  address: 10.0.0.1\n  inbound:\n"
            "  - port: 8080\n    tags: {kuma.io/service: a, 'inv@lidT/gN%me': v, z: 'inv@lid',"
            " '': x, path: a/b, 'q\"k': v}\n"
        ),
        [
            ("networking.inbound[0].tags", "tag name must be non-empty"),
            ('networking.inbound[0].tags["inv@lidT/gN%me"]', KEY_CHARS),
            ('networking.inbound[0].tags["path"]', VALUE_CHARS),
            ('networking.inbound[0].tags["q\\"k"]', KEY_CHARS),
            ('networking.inbound[0].tags["z"]', VALUE_CHARS),
        ],
        id="tag-characters-in-sorted-key-order",
    ),
    pytest.param(
        dp_networking(
            "  address: 10.0.0.1\n  inbound:\n  - port: 8080\n    tags: {kuma.io/service: a}\n"
            "    serviceProbe: {interval: 0s, timeout: soon, unhealthyThreshold: 0,"
            " healthyThreshold: -1}\n"
        ),
        [
            ("networking.inbound[0].serviceProbe.interval", "must have a positive value"),
            ("networking.inbound[0].serviceProbe.timeout", DURATION),
            ("networking.inbound[0].serviceProbe.unhealthyThreshold", "must have a positive value"),
            ("networking.inbound[0].serviceProbe.healthyThreshold", "must have a positive value"),
        ],
        id="service-probe",
    ),
    # --- outbounds ----------------------------------------------------------------------------
    pytest.param(
        dp_networking(
            "  address: 10.0.0.1\n" + INBOUND + "  outbound:\n"
            "  - {port: 10001}\n"
            "  - {port: 10002, tags: {version: v1}}\n"
            "  - {port: 0, address: localhost, tags: {kuma.io/service: c}}\n"
        ),
        [
            ("networking.outbound[0].tags", MISSING_SERVICE),
            ("networking.outbound[1].tags", MISSING_SERVICE),
            ("networking.outbound[2].port", PORT_RANGE),
            ("networking.outbound[2].address", "address has to be valid IP address"),
        ],
        id="outbounds",
    ),
    # --- gateways -----------------------------------------------------------------------------
    pytest.param(
        dp_networking(
            "  address: 10.0.0.1\n" + INBOUND + "  gateway: {tags: {kuma.io/protocol: http}}\n"
        ),
        [
            ("networking.inbound", "inbound cannot be defined for delegated gateways"),
            (
                'networking.gateway.tags["kuma.io/protocol"]',
                'other values than tcp are not allowed, provided value "http"',
            ),
            ("networking.gateway.tags", MISSING_SERVICE),
        ],
        id="gateway-delegated-with-inbound",
    ),
    pytest.param(
        dp_networking(
            "  address: 10.0.0.1\n" + INBOUND + "  outbound:\n"
            "  - {port: 10001, tags: {kuma.io/service: db}}\n"
            "  gateway: {type: BUILTIN, tags: {kuma.io/service: edge, kuma.io/protocol: TCP}}\n"
        )
        + "probes: {port: 9000}\n",
        [
            ("networking.inbound", "inbound cannot be defined for builtin gateways"),
            ("networking.outbound", "outbound cannot be defined for builtin gateways"),
            ("networking.probes", "probes cannot be defined for builtin gateways"),
            (
                'networking.gateway.tags["kuma.io/protocol"]',
                'other values than tcp are not allowed, provided value "TCP"',
            ),
        ],
        id="gateway-builtin-with-inbound-outbound-probes",
    ),
    # --- admin, probes, transparent proxying --------------------------------------------------
    pytest.param(
        dp_networking(
            "  address: 10.0.0.1\n  admin: {port: 8080}\n  inbound:\n"
            "  - {port: 8080, address: 127.0.0.1, servicePort: 7777, tags: {kuma.io/service: a}}\n"
        ),
        [("networking.admin.port", "must differ from inbound")],
        id="admin-port-equals-inbound-on-loopback",
    ),
    pytest.param(
        dp_networking(
            "  address: 10.0.0.1\n  admin: {port: 80}\n  inbound:\n"
            "  - {port: 8080, servicePort: 80, serviceAddress: 127.0.0.1,"
            " tags: {kuma.io/service: a}}\n"
        ),
        [("networking.admin.port", "must differ from inbound")],
        id="admin-port-equals-application-port-on-loopback",
    ),
    pytest.param(
        dp_networking(
            "  address: 10.0.0.1\n  admin: {port: 10001}\n"
            + INBOUND
            + "  outbound:\n  - {port: 10001, tags: {kuma.io/service: db}}\n"
        ),
        [("networking.admin.port", "must differ from outbound")],
        id="admin-port-equals-outbound",
    ),
    pytest.param(
        dp_networking("  address: 10.0.0.1\n  admin: {port: 65536}\n" + INBOUND),
        [("networking.admin.port", PORT_RANGE)],
        id="admin-port-range",
    ),
    pytest.param(
        # Kuma: the probe case of dataplane_validator_test.go.
        dp_networking("  address: 10.0.0.1\n" + INBOUND) + "probes:\n  port: 0\n  endpoints:\n"
        "  - {inboundPort: 8088, inboundPath: /healthz, path: /8080/healthz}\n"
        "  - {inboundPort: 99999999, inboundPath: healthz, path: 8080/healthz}\n"
        "  - {inboundPort: 1000, inboundPath: '', path: '/bad%zz'}\n",
        [
            ("probes.port", PORT_RANGE),
            ("probes.endpoints[1].inboundPort", PORT_RANGE),
            ("probes.endpoints[1].inboundPath", "should be a valid URL Path"),
            ("probes.endpoints[1].path", "should be a valid URL Path"),
            ("probes.endpoints[2].inboundPath", "should be a valid URL Path"),
            ("probes.endpoints[2].path", "should be a valid URL Path"),
        ],
        id="probes",
    ),
    pytest.param(
        dp_networking(
            "  address: 10.0.0.1\n" + INBOUND + "  transparentProxying:\n"
            "    {redirectPortInbound: 70000, redirectPortOutbound: -1, ipFamilyMode: IPv5}\n"
        ),
        [
            ("networking.transparentProxying.redirectPortInbound", PORT_RANGE),
            ("networking.transparentProxying.redirectPortOutbound", PORT_RANGE),
            (
                "networking.transparentProxying.ipFamilyMode",
                'invalid value "IPv5". Allowed values: UnSpecified, DualStack, IPv4, IPv6',
            ),
        ],
        id="transparent-proxying-not-in-kuma",
    ),
    # --- listener clashes (not in Kuma) -------------------------------------------------------
    pytest.param(
        dp_networking(
            "  address: 10.0.0.1\n  inbound:\n"
            "  - {port: 8080, tags: {kuma.io/service: a}}\n"
            "  - {port: 8080, address: 10.0.0.2, tags: {kuma.io/service: b}}\n"
            "  - {port: 8080, address: 10.0.0.1, tags: {kuma.io/service: c}}\n"
            "  outbound:\n"
            "  - {port: 10001, tags: {kuma.io/service: d}}\n"
            "  - {port: 10001, address: 127.0.0.1, tags: {kuma.io/service: e}}\n"
            "  - {port: 8080, address: 10.0.0.2, tags: {kuma.io/service: f}}\n"
        ),
        [
            ("networking.inbound[2].port", "port 8080 is already used by networking.inbound[0]"),
            ("networking.outbound[1].port", "port 10001 is already used by networking.outbound[0]"),
            ("networking.outbound[2].port", "port 8080 is already used by networking.inbound[1]"),
        ],
        id="listener-clashes",
    ),
    # --- names --------------------------------------------------------------------------------
    pytest.param(
        "type: Dataplane\nmesh: My_Mesh\nname: Web_01\nnetworking:\n  address: 10.0.0.1\n"
        + INBOUND,
        [("name", RFC1123), ("mesh", LEGACY_NAME_MESSAGE)],
        id="name-and-mesh-not-rfc1123",
    ),
    pytest.param(
        # Kuma's legacy mesh pattern allows "_"; no Mesh here can have one (RFC 1123).
        "type: Dataplane\nmesh: my_mesh\nname: web-01\nnetworking:\n  address: 10.0.0.1\n"
        + INBOUND,
        [("mesh", RFC1123)],
        id="mesh-legacy-but-not-rfc1123",
    ),
    pytest.param(
        "type: Dataplane\nmesh: ''\nname: ''\nnetworking:\n  address: 10.0.0.1\n" + INBOUND,
        [("name", "cannot be empty"), ("mesh", "cannot be empty")],
        id="name-and-mesh-empty",
    ),
]


@pytest.mark.parametrize(("text", "expected"), INVALID)
def test_invalid_resources_report_exactly_these_violations(
    text: str, expected: list[tuple[str, str]]
) -> None:
    assert pairs(one(text)) == expected


def test_every_violation_is_reported_at_once() -> None:
    resource = one(
        """type: Dataplane
mesh: Default
name: dp_1
networking:
  address: 0.0.0.0
  admin: {port: 9901}
  inbound:
  - {port: 9901, address: 127.0.0.1, serviceAddress: 127.0.0.1, tags: {version: ''}}
  - {port: 9901, address: 127.0.0.1, servicePort: 0, tags: {kuma.io/service: b,
     kuma.io/protocol: smtp}}
  outbound:
  - {port: 70000, address: 'fe80::1%eth0'}
probes: {port: 9000, endpoints: [{inboundPort: 8080, inboundPath: health, path: /p}]}
"""
    )
    assert pairs(resource) == [
        ("name", RFC1123),
        ("mesh", LEGACY_NAME_MESSAGE),
        ("networking.admin.port", "must differ from inbound"),
        ("networking.address", "must not be 0.0.0.0 or ::"),
        ("networking.inbound[0].serviceAddress", DIFFER),
        ('networking.inbound[0].tags["version"]', "tag value must be non-empty"),
        ('networking.inbound[0].tags["kuma.io/service"]', "tag has to exist"),
        ("networking.inbound[1].servicePort", PORT_RANGE),
        (
            'networking.inbound[1].tags["kuma.io/protocol"]',
            f'tag "kuma.io/protocol" has an invalid value "smtp". {ALLOWED}',
        ),
        ("networking.outbound[0].port", PORT_RANGE),
        ("networking.outbound[0].address", "address has to be valid IP address"),
        ("networking.outbound[0].tags", MISSING_SERVICE),
        ("probes.endpoints[0].inboundPath", "should be a valid URL Path"),
        ("networking.inbound[1].port", "port 9901 is already used by networking.inbound[0]"),
    ]
    with pytest.raises(ValidationError) as raised:
        check(resource)
    assert raised.value.subject == "Dataplane Default/dp_1"
    assert len(raised.value.violations) == 14
    assert str(raised.value).startswith(f"Dataplane Default/dp_1: name: {RFC1123}; mesh: ")

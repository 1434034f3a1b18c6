"""Rules shared by every resource type: names, ports, addresses, tags and durations.

Every checker appends :class:`Violation` objects to the list it is given, so one pass reports
every broken rule at once (Kuma's behaviour). Field paths follow Kuma's notation: ``.field``,
``[index]`` and ``["key"]`` with the key quoted as Go's ``%q`` would.

Validation runs for every resource on load, so the happy path is kept allocation-free where it
can be: regexes are precompiled, IPv4 is recognised by a regex rather than :mod:`ipaddress`, and
strings already known to be valid (tag keys and values, mesh names, durations repeat across
thousands of Dataplanes) are remembered in bounded sets.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from collections.abc import Mapping

from ..errors import Violation
from ..model import SERVICE_TAG

MAX_PORT = 65535
PORT_RANGE = "port must be in the range [1, 65535]"
MISSING_SERVICE_TAG = f'mandatory tag "{SERVICE_TAG}" is missing'

# --- names (Kuma: pkg/core/resources/apis/mesh/meta_validator.go) -------------------------------

_MAX_NAME_LENGTH = 253
_RFC1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
RFC1123_MESSAGE = (
    "invalid characters. A lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
    "characters, '-' or '.', and must start and end with an alphanumeric character"
)

# Caches of strings already found valid. They only ever hold valid values and are capped, so a
# stream of unique values (instance ids as tag values, say) costs bounded memory and no error.
_CACHE_LIMIT = 65536
_valid_mesh_names: set[str] = set()
_valid_tag_keys: set[str] = set()
_valid_tag_values: set[str] = set()
_valid_ips: set[str] = set()


def _remember(cache: set[str], value: str) -> None:
    if len(cache) < _CACHE_LIMIT:
        cache.add(value)


def check_name(out: list[Violation], field: str, name: str) -> None:
    """A resource name: a lowercase RFC 1123 subdomain of at most 253 characters."""
    if not name:
        out.append(Violation(field, "cannot be empty"))
    elif len(name) > _MAX_NAME_LENGTH:
        out.append(Violation(field, "value length must less or equal 253"))
    elif _RFC1123_SUBDOMAIN.fullmatch(name) is None:
        out.append(Violation(field, RFC1123_MESSAGE))


_LEGACY_NAME = re.compile(r"[0-9a-z\-_.]*")
LEGACY_NAME_MESSAGE = (
    "invalid characters. Valid characters are numbers, lowercase latin letters and "
    "'-', '_', '.' symbols."
)


def check_mesh_name(out: list[Violation], mesh: str) -> None:
    """The ``mesh`` of a mesh-scoped resource follows the same rule as a name.

    Kuma checks it against a laxer legacy pattern (``_`` allowed) because meshes created before
    Kuma 2.5 may hold one, with its own message; a mesh name outside that pattern gets Kuma's
    message. Every Mesh in this project passed the RFC 1123 rule, so a mesh name that passes
    the legacy pattern but not RFC 1123 can only name a Mesh that cannot exist: refused too,
    with the RFC 1123 message.
    """
    if mesh in _valid_mesh_names:
        return
    before = len(out)
    if mesh and len(mesh) <= _MAX_NAME_LENGTH and _LEGACY_NAME.fullmatch(mesh) is None:
        out.append(Violation("mesh", LEGACY_NAME_MESSAGE))
    else:
        check_name(out, "mesh", mesh)
    if len(out) == before:
        _remember(_valid_mesh_names, mesh)


# --- ports -------------------------------------------------------------------------------------


def check_port(out: list[Violation], field: str, port: int) -> None:
    if not 1 <= port <= MAX_PORT:
        out.append(Violation(field, PORT_RANGE))


def check_optional_port(out: list[Violation], field: str, port: int | None) -> None:
    """A port where 0 (or absent) means "use the default", as in Kuma's proto3 fields."""
    if port and not 1 <= port <= MAX_PORT:
        out.append(Violation(field, PORT_RANGE))


# --- addresses -----------------------------------------------------------------------------------

# Go's net.ParseIP for IPv4: four decimal octets, no leading zeros (Go >= 1.17 rejects them).
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
# govalidator.IsDNSName, which Kuma uses for networking.address.
_DNS_NAME = re.compile(
    r"[a-zA-Z0-9_][a-zA-Z0-9_-]{0,62}(?:\.[a-zA-Z0-9_][a-zA-Z0-9_-]{0,62})*[._]?"
)
_MAX_DNS_NAME_CHARACTERS = 255
_IPV4_LOOPBACK = ipaddress.IPv4Address("127.0.0.1")


@functools.lru_cache(maxsize=4096)
def _parse_ipv6(text: str) -> ipaddress.IPv6Address | None:
    # Python accepts a scope ("fe80::1%eth0"); Go's net.ParseIP does not.
    if "%" in text:
        return None
    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        return None


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address ``text`` denotes under Go's ``net.ParseIP`` rules, else None."""
    if _IPV4.fullmatch(text) is not None:
        return ipaddress.IPv4Address(text)
    if ":" in text:
        return _parse_ipv6(text)
    return None


def is_ip(text: str) -> bool:
    if text in _valid_ips:
        return True
    if _IPV4.fullmatch(text) is not None or (":" in text and _parse_ipv6(text) is not None):
        _remember(_valid_ips, text)
        return True
    return False


def overlaps_loopback(text: str) -> bool:
    """Whether a listener on ``text`` would take 127.0.0.1 (where Envoy's admin listens).

    Kuma's ``overlap``: equal to 127.0.0.1 (also as ::ffff:127.0.0.1) or the unspecified
    address. A DNS name or an empty address never overlaps.
    """
    address = parse_ip(text)
    if address is None:
        return False
    if address.is_unspecified:
        return True
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address == _IPV4_LOOPBACK


def is_dns_name(text: str) -> bool:
    """govalidator.IsDNSName: at most 255 characters besides dots, labels of Kuma's pattern."""
    return (
        bool(text)
        and len(text) - text.count(".") <= _MAX_DNS_NAME_CHARACTERS
        and not is_ip(text)
        and _DNS_NAME.fullmatch(text) is not None
    )


def check_address(out: list[Violation], field: str, address: str) -> None:
    """An address proxies listen on or are reached at: an IP or a DNS name, not a wildcard."""
    if not address:
        out.append(Violation(field, "address can't be empty"))
        return
    if _IPV4.fullmatch(address) is not None:
        if address == "0.0.0.0":
            out.append(Violation(field, "must not be 0.0.0.0 or ::"))
        return
    if ":" in address:
        ipv6 = _parse_ipv6(address)
        if ipv6 is not None:
            # Kuma compares with the literal "::"; any spelling of the wildcard is as wrong.
            if ipv6.is_unspecified:
                out.append(Violation(field, "must not be 0.0.0.0 or ::"))
            return
    if (
        len(address) - address.count(".") > _MAX_DNS_NAME_CHARACTERS
        or _DNS_NAME.fullmatch(address) is None
    ):
        out.append(Violation(field, "address has to be valid IP address or domain name"))


# --- tags (Kuma: pkg/core/resources/apis/mesh/validators.go) ------------------------------------

_TAG_KEY = re.compile(r"[a-zA-Z0-9.\-_:/]*")
_TAG_VALUE = re.compile(r"[a-zA-Z0-9.\-_:]*")
TAG_KEY_CHARACTERS = (
    "tag name must consist of alphanumeric characters, dots, dashes, slashes and underscores"
)
TAG_VALUE_CHARACTERS = (
    "tag value must consist of alphanumeric characters, dots, dashes and underscores"
)
_GO_PLAIN_STRING = re.compile(r'[^"\\\x00-\x1f\x7f]*')


def go_quote(text: str) -> str:
    """``text`` quoted as Go's ``%q`` does, for the common cases (printable, no quotes)."""
    if _GO_PLAIN_STRING.fullmatch(text) is not None and text.isprintable():
        return f'"{text}"'
    return json.dumps(text, ensure_ascii=False)


def tag_field(path: str, key: str) -> str:
    return f"{path}[{go_quote(key)}]"


def tags_known_valid(tags: Mapping[str, str]) -> bool:
    """Whether every key and value was already found valid: the fast path of every check."""
    for key, value in tags.items():
        if key not in _valid_tag_keys or value not in _valid_tag_values:
            return False
    return True


def check_tag_entries(out: list[Violation], path: str, tags: Mapping[str, str]) -> None:
    """Every key and value of a tag map, in sorted key order (Kuma sorts them too)."""
    if tags_known_valid(tags):
        return
    for key in sorted(tags):
        value = tags[key]
        field = tag_field(path, key)
        if not key:
            out.append(Violation(path, "tag name must be non-empty"))
        elif key in _valid_tag_keys or _TAG_KEY.fullmatch(key) is not None:
            _remember(_valid_tag_keys, key)
        else:
            out.append(Violation(field, TAG_KEY_CHARACTERS))
        if not value:
            out.append(Violation(field, "tag value must be non-empty"))
        elif value in _valid_tag_values or _TAG_VALUE.fullmatch(value) is not None:
            _remember(_valid_tag_values, value)
        else:
            out.append(Violation(field, TAG_VALUE_CHARACTERS))


def is_tag_value(value: str) -> bool:
    """A valid tag value (a service name, say): non-empty, Kuma's characters."""
    return bool(value) and (value in _valid_tag_values or _TAG_VALUE.fullmatch(value) is not None)


def check_service_tags(out: list[Violation], path: str, tags: Mapping[str, str]) -> None:
    """Tags that must name a service (outbound, gateway, available service)."""
    check_tag_entries(out, path, tags)
    if SERVICE_TAG not in tags:
        out.append(Violation(path, MISSING_SERVICE_TAG))


# --- durations --------------------------------------------------------------------------------

_NANOSECONDS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # MICRO SIGN, as Go accepts it
    "\u03bcs": 1_000,  # GREEK SMALL LETTER MU, likewise
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_UNIT = "ns|us|\u00b5s|\u03bcs|ms|s|m|h"
_DURATION = re.compile(rf"[-+]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:{_UNIT}))+|[-+]?0")
_DURATION_PART = re.compile(rf"([0-9]*)(?:\.([0-9]*))?({_UNIT})")
_MAX_NANOSECONDS = 2**63 - 1
DURATION_FORMAT = 'must be a valid duration such as "10s", "1m30s" or "500ms"'


@functools.lru_cache(maxsize=1024)
def parse_duration_ns(text: str) -> int:
    """Nanoseconds in a Go duration string ("10s", "1m30s", "500ms", "1.5h", "0").

    Raises ValueError when ``text`` is not one. Kuma stores these as protobuf Durations, whose
    JSON form ("1.5s") is a subset of Go's syntax.
    """
    if _DURATION.fullmatch(text) is None:
        raise ValueError(f"invalid duration {text!r}")
    total = 0
    for whole, fraction, unit in _DURATION_PART.findall(text):
        scale = _NANOSECONDS[unit]
        total += int(whole or "0") * scale
        if fraction:
            total += int(fraction) * scale // 10 ** len(fraction)
    if total > _MAX_NANOSECONDS:
        raise ValueError(f"duration {text!r} is out of range")
    return -total if text.startswith("-") else total


def check_positive_duration(out: list[Violation], field: str, text: str) -> None:
    try:
        nanoseconds = parse_duration_ns(text)
    except ValueError:
        out.append(Violation(field, DURATION_FORMAT))
        return
    if nanoseconds <= 0:
        out.append(Violation(field, "must have a positive value"))


def check_positive(out: list[Violation], field: str, value: int) -> None:
    if value <= 0:
        out.append(Violation(field, "must have a positive value"))

"""Kuma's gateway hostnames (``pkg/plugins/runtime/gateway/match/hostnames.go``): ``*``,
``*.domain`` or a domain; empty means ``*``."""

from __future__ import annotations

from typing import NamedTuple

WILDCARD = "*"


class Hostname(NamedTuple):
    host: str
    domain: tuple[str, ...]

    @classmethod
    def of(cls, name: str) -> Hostname:
        first, *rest = (name or WILDCARD).split(".")
        return cls(first, tuple(rest))

    @property
    def wildcard(self) -> bool:
        return self.host == WILDCARD

    def contains(self, other: Hostname) -> bool:
        """Every host ``other`` names is one ``self`` names."""
        if len(self.domain) > len(other.domain):
            return False
        if self.domain and other.domain[len(other.domain) - len(self.domain) :] != self.domain:
            return False
        return self.wildcard or self.host == other.host

    def __str__(self) -> str:
        return ".".join((self.host, *self.domain))


def contains(target: str, test: str) -> bool:
    return Hostname.of(target).contains(Hostname.of(test))


def overlap(target: str, other: str) -> bool:
    """Kuma's ``match.Hostnames``: some host is named by both."""
    if target == other:
        return True
    a, b = Hostname.of(target), Hostname.of(other)
    return a.contains(b) or b.contains(a)


def exactness_key(name: str) -> tuple[int, int, str]:
    """Kuma's ``IsMoreExact`` as a sort key: plain names first (by name), then wildcards
    with more domain labels first."""
    hostname = Hostname.of(name)
    if not hostname.wildcard:
        return (0, 0, str(hostname))
    return (1, -len(hostname.domain), str(hostname))

"""One mesh's ExternalServices and the Secrets their DataSources may name, indexed by service.

The input handlers of ``handlers/external_service.py`` (ExternalService, Secret) put and remove
resources here and get back the services whose endpoints that changed; generation reads a
service's resolved endpoints (``MeshState.external``), computed once per change.

Secret values are kept for every Secret of the mesh (a Secret may arrive before the
ExternalService naming it: KDS sends Secrets first); they are never logged: a missing one is
reported by the ExternalService's and the Secret's names.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from kuma.resources import ExternalService
from kuma.xds.generate.external import ExternalEndpoint, referenced_secrets, resolve_endpoints

_NONE: tuple[ExternalEndpoint, ...] = ()


class ExternalServices:
    def __init__(self, mesh: str) -> None:
        self.mesh = mesh
        self._by_name: dict[str, ExternalService] = {}
        #: service → its ExternalServices by name.
        self._by_service: dict[str, dict[str, ExternalService]] = {}
        self._secrets: dict[str, bytes] = {}
        #: Secret name → the services whose ExternalServices read it → how many of them.
        self._readers: dict[str, Counter[str]] = {}
        self._resolved: dict[str, tuple[ExternalEndpoint, ...]] = {}

    def __bool__(self) -> bool:
        return bool(self._by_name)

    def services(self) -> frozenset[str]:
        """The external services (those some ExternalService tags)."""
        return frozenset(self._by_service)

    def resources(self) -> Iterable[ExternalService]:
        return self._by_name.values()

    def get(self, name: str) -> ExternalService | None:
        return self._by_name.get(name)

    def endpoints(self, service: str) -> tuple[ExternalEndpoint, ...]:
        """The resolved endpoints of ``service`` (empty: not an external service)."""
        if not self._by_service:
            return _NONE
        cached = self._resolved.get(service)
        if cached is None:
            members = self._by_service.get(service)
            cached = resolve_endpoints(members, self._secrets, self.mesh) if members else _NONE
            self._resolved[service] = cached
        return cached

    def put(self, resource: ExternalService) -> set[str]:
        """Add or replace an ExternalService; the services it left or joined."""
        touched = self.remove(resource.name)
        self._by_name[resource.name] = resource
        self._by_service.setdefault(resource.service, {})[resource.name] = resource
        for secret in referenced_secrets(resource):
            self._readers.setdefault(secret, Counter())[resource.service] += 1
        self._resolved.pop(resource.service, None)
        touched.add(resource.service)
        return touched

    def remove(self, name: str) -> set[str]:
        previous = self._by_name.pop(name, None)
        if previous is None:
            return set()
        members = self._by_service[previous.service]
        del members[name]
        if not members:
            del self._by_service[previous.service]
        for secret in referenced_secrets(previous):
            readers = self._readers[secret]
            readers[previous.service] -= 1
            if readers[previous.service] == 0:
                del readers[previous.service]
                if not readers:
                    del self._readers[secret]
        self._resolved.pop(previous.service, None)
        return {previous.service}

    def secret(self, name: str) -> bytes | None:
        """The value of the mesh's Secret ``name`` (None: there is none)."""
        return self._secrets.get(name)

    def set_secret(self, name: str, value: bytes | None) -> set[str]:
        """A Secret of the mesh changed (None: deleted); the services whose ExternalServices
        read it."""
        if self._secrets.get(name) == value:
            return set()
        if value is None:
            del self._secrets[name]
        else:
            self._secrets[name] = value
        touched = set(self._readers.get(name, ()))
        for service in touched:
            self._resolved.pop(service, None)
        return touched

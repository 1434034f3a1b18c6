"""A :class:`kuma.xds.secrets.SecretSource` test double: the test issues and revokes secrets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from envoy.extensions.transport_sockets.tls.v3.secret_pb2 import Secret

from kuma.xds.proxy_metadata import ProxyMetadata
from kuma.xds.secrets import SecretWatchBase
from kuma.xds.snapshot import VersionedResource, versioned
from kuma.xds.types import SECRET


def secret(name: str, rev: int = 0) -> VersionedResource:
    """A small, real Secret; ``rev`` changes its content (and so its version)."""
    message = Secret(name=name)
    message.generic_secret.secret.inline_string = f"rev-{rev}"
    return versioned(SECRET, name, message)


class SecretWatch(SecretWatchBase):
    def __init__(self, source: SecretsDouble, node_id: str) -> None:
        super().__init__(node_id)
        self._source = source

    def resources(self, type_url: str) -> Mapping[str, VersionedResource]:
        return self._source.secrets.get(self._node_id, {}) if type_url == SECRET else {}


class SecretsDouble:
    def __init__(self) -> None:
        self.secrets: dict[str, dict[str, VersionedResource]] = {}
        self.watches: dict[str, list[SecretWatch]] = {}

    def issue(self, node_id: str, name: str, rev: int = 0) -> VersionedResource:
        item = self.secrets.setdefault(node_id, {})[name] = secret(name, rev)
        self._notify(node_id, name)
        return item

    def revoke(self, node_id: str, name: str) -> None:
        del self.secrets[node_id][name]
        self._notify(node_id, name)

    def _notify(self, node_id: str, name: str) -> None:
        for watch in self.watches.get(node_id, []):
            watch.mark((name,))

    @asynccontextmanager
    async def watch_proxy(
        self, node_id: str, metadata: ProxyMetadata | None = None
    ) -> AsyncIterator[SecretWatch]:
        watch = SecretWatch(self, node_id)
        self.watches.setdefault(node_id, []).append(watch)
        try:
            yield watch
        finally:
            self.watches[node_id].remove(watch)

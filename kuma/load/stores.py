"""Writing the synthetic mesh where a control plane reads it: a folder, etcd, or a REST API.

* ``directory``: one JSON file per Dataplane (``dp-<name>.json``) and the Mesh in the file
  kuma-cp itself would create (``mesh-<name>.yaml``; a ZoneIngress in JSON, as kuma-cp writes
  it), written atomically (temp dot-file, then ``os.replace``) as the directory store expects.
* ``etcd``: raw keys in the etcd store's layout (``<prefix>/Dataplane/<mesh>/<name>``, values
  encoded by ``kuma_etcd_store.layout``), written in transactions of up to 100 puts.
* ``rest``: Kuma's REST API (``PUT /meshes/{mesh}/dataplanes/{name}``). kuma-py has no API
  server yet: the writer is Kuma-shaped and fails with a clear message when nothing listens.

``write`` returns after the write is durable for the store (file renamed, etcd acknowledged,
HTTP 2xx); the driver takes the time just before calling it.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from kuma.resources import ResourceKey, from_document

from .mesh import proxy_name


class StoreWriter(Protocol):
    async def write_all(self, documents: Sequence[dict[str, Any]]) -> None:
        """Write the initial mesh (the Mesh document first, then its policies)."""
        ...

    async def write(self, document: dict[str, Any]) -> None: ...

    async def close(self) -> None: ...


class DirectoryWriter:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)

    def _file(self, document: dict[str, Any]) -> tuple[Path, bytes]:
        if document["type"] != "Dataplane":
            resource = from_document(document)
            # The name kuma-cp gives the default Mesh (it finds it there and creates no other)
            # and any other resource, in the format of kuma-cp's own files.
            from kuma_directory_store.files import encode_new, file_name_for

            name = file_name_for(ResourceKey.of(resource))
            return self.path / name, encode_new(resource)
        return self.path / f"{document['name']}.json", orjson.dumps(document)

    def _write_sync(self, document: dict[str, Any]) -> None:
        path, data = self._file(document)
        temp = path.with_name(f".{path.name}.load-tmp")
        temp.write_bytes(data)
        os.replace(temp, path)

    async def write_all(self, documents: Sequence[dict[str, Any]]) -> None:
        for document in documents:
            self._write_sync(document)

    async def write(self, document: dict[str, Any]) -> None:
        # A few hundred microseconds: not worth a thread hop that would add jitter.
        self._write_sync(document)

    async def close(self) -> None:
        pass


class EtcdWriter:
    BATCH = 100

    def __init__(self, endpoint: str, prefix: str = "/kuma") -> None:
        import aetcd

        from kuma_etcd_store.config import parse_options
        from kuma_etcd_store.kv import KV
        from kuma_etcd_store.layout import KeyLayout

        options = parse_options({"endpoints": [endpoint], "prefix": prefix})
        host, port = options.grpc_target
        self._client = aetcd.Client(host=host, port=port, timeout=10.0)
        self._kv = KV(self._client, 10.0)
        self._layout = KeyLayout(prefix)
        self._connected = False

    def _op(self, document: dict[str, Any]) -> Any:
        from kuma_etcd_store import kv
        from kuma_etcd_store.layout import encode_value

        resource = from_document(document)
        now = datetime.now(UTC)
        return kv.put(self._layout.of(resource), encode_value(resource, now, now))

    async def _connect(self) -> None:
        if not self._connected:
            await self._client.connect()
            self._connected = True

    async def write_all(self, documents: Sequence[dict[str, Any]]) -> None:
        await self._connect()
        for start in range(0, len(documents), self.BATCH):
            batch = documents[start : start + self.BATCH]
            await self._kv.txn([], [self._op(d) for d in batch], [])

    async def write(self, document: dict[str, Any]) -> None:
        await self._connect()
        await self._kv.txn([], [self._op(document)], [])

    async def close(self) -> None:
        if self._connected:
            await self._client.close()


class RestWriter:
    """Kuma's REST API: ``PUT /meshes`` and ``PUT /meshes/{mesh}/dataplanes/{name}``."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def _put_sync(self, document: dict[str, Any]) -> None:
        if document["type"] == "Mesh":
            path = f"/meshes/{document['name']}"
        elif document["type"] == "Dataplane":
            path = f"/meshes/{document['mesh']}/dataplanes/{document['name']}"
        else:
            path = f"/meshes/{document['mesh']}/{document['type'].lower()}s/{document['name']}"
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(document).encode(),
            method="PUT",
            headers={"content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
        except urllib.error.URLError as exc:
            raise RuntimeError(f"REST target {self.url} is not usable: {exc}") from exc

    async def write_all(self, documents: Sequence[dict[str, Any]]) -> None:
        for document in documents:
            await asyncio.to_thread(self._put_sync, document)

    async def write(self, document: dict[str, Any]) -> None:
        await asyncio.to_thread(self._put_sync, document)

    async def close(self) -> None:
        pass


def open_writer(kind: str, location: str, *, etcd_prefix: str = "/kuma") -> StoreWriter:
    if kind == "directory":
        return DirectoryWriter(Path(location))
    if kind == "etcd":
        return EtcdWriter(location, etcd_prefix)
    if kind == "rest":
        return RestWriter(location)
    raise ValueError(f"unknown store target {kind!r} (directory, etcd, rest)")


def dataplane_file(folder: Path, index: int) -> Path:
    return folder / f"{proxy_name(index)}.json"

"""The API over the directory store: a PUT becomes a file, a DELETE removes it, and files
dropped in the folder are served."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import anyio
import pytest

from kuma.resources import decode
from kuma.store import ResourceEvent, open_store
from kuma_directory_store import store as store_module

from .helpers import dataplane_yaml, serve

pytestmark = pytest.mark.anyio


def _resources_in(folder: Path) -> dict[str, list[tuple[str, str]]]:
    return {
        path.name: [(r.TYPE, r.name) for r in decode(path.read_text())]
        for path in sorted(folder.rglob("*.yaml"))
    }


async def test_writes_land_as_files(tmp_path: Path) -> None:
    folder = tmp_path / "resources"
    async with (
        open_store("directory", {"path": str(folder), "debounceMs": 20}) as store,
        serve(store) as api,
    ):
        assert (await api.put("/meshes/default", "type: Mesh\nname: default\n")).status == 201
        path = "/meshes/default/dataplanes/web-01"
        assert (await api.put(path, dataplane_yaml("web-01"))).status == 201
        files = _resources_in(folder)
        assert sorted(kind for docs in files.values() for kind in docs) == [
            ("Dataplane", "web-01"),
            ("Mesh", "default"),
        ]
        (dataplane_file,) = [f for f, docs in files.items() if ("Dataplane", "web-01") in docs]

        assert (await api.put(path, dataplane_yaml("web-01", port=19090))).status == 200
        assert "19090" in (folder / dataplane_file).read_text()

        # A file dropped by hand is served (the store picks it up by watching the folder).
        async with store.watch() as events:
            (folder / "by-hand.yaml").write_text(dataplane_yaml("web-02", port=18082))
            with anyio.fail_after(10):
                async for event in events:
                    if isinstance(event, ResourceEvent) and event.resource.name == "web-02":
                        break
        assert (await api.get("/meshes/default/dataplanes/web-02")).status == 200

        assert (await api.delete(path)).status == 200
        assert ("Dataplane", "web-01") not in [
            doc for docs in _resources_in(folder).values() for doc in docs
        ]
        # A refused write leaves the folder as it was.
        before = _resources_in(folder)
        bad = await api.put(path, dataplane_yaml("web-01", port=0))
        assert bad.status == 400
        assert _resources_in(folder) == before


async def test_a_253_character_name_is_stored_under_a_safe_file_name(tmp_path: Path) -> None:
    """Issue 17, defect 4: the longest valid name used to exceed the file system's limit on
    a file name (503 with the server's path in the body)."""
    folder = tmp_path / "resources"
    name = ("a" * 62 + ".") * 4 + "b"  # 253 characters, a valid DNS-1123 subdomain
    assert len(name) == 253
    async with (
        open_store("directory", {"path": str(folder), "debounceMs": 20}) as store,
        serve(store) as api,
    ):
        assert (await api.put("/meshes/default", "type: Mesh\nname: default\n")).status == 201
        path = f"/meshes/default/dataplanes/{name}"
        reply = await api.put(path, dataplane_yaml(name))
        assert reply.status == 201, reply.body.decode()
        assert (await api.get(path)).status == 200
        (stored,) = [f for f in folder.iterdir() if name[:40] in f.name]
        assert len(stored.name.encode()) <= 255
        other = name[:-1] + "c"  # the same first 250 characters: another file
        assert (
            await api.put(f"/meshes/default/dataplanes/{other}", dataplane_yaml(other))
        ).status == 201
        assert len([f for f in folder.iterdir() if name[:40] in f.name]) == 2


async def test_a_store_failure_is_logged_and_never_shows_server_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "resources"

    def full(path: str, data: bytes, *, new_mode: int = 0o666) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", path)

    async with (
        open_store("directory", {"path": str(folder), "debounceMs": 20}) as store,
        serve(store) as api,
    ):
        monkeypatch.setattr(store_module, "write_atomically", full)
        reply = await api.put("/meshes/default", "type: Mesh\nname: default\n")
        assert reply.status == 503
        assert str(tmp_path) not in reply.body.decode()
        assert "No space left on device" in reply.body.decode()
    logged = [
        (r.getMessage(), str(getattr(r, "fields", {}).get("path")))
        for r in caplog.records
        if r.levelno >= logging.WARNING
    ]
    assert any("No space left" in line and str(folder) in path for line, path in logged)

"""The live feed end to end over HTTP: a file dropped into a directory store, a broken file,
a proxy going online, all arrive as server-sent events; stopping the GUI ends the stream."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import orjson
import pytest

from kuma.store import open_store

from .harness import serve_gui

pytestmark = pytest.mark.anyio

DATAPLANE = """\
type: Dataplane
mesh: default
name: {name}
networking:
  address: 127.0.0.1
  inbound:
  - port: 8080
    tags: {{kuma.io/service: web}}
"""
MESH = "type: Mesh\nname: default\n"


def drop(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


async def next_changes(reply: aiohttp.ClientResponse) -> list[dict[str, Any]]:
    """The next ``changes`` event of a server-sent-events stream (pings are skipped)."""
    event, data = "", ""
    async for raw in reply.content:
        line = raw.decode().rstrip("\r\n")
        if line.startswith("event:"):
            event = line.partition(":")[2].strip()
        elif line.startswith("data:"):
            data += line.partition(":")[2].strip()
        elif line == "" and data:
            if event == "changes":
                notices: list[dict[str, Any]] = orjson.loads(data)
                return notices
            event, data = "", ""
    raise AssertionError("the event stream ended")


async def wait_for(reply: aiohttp.ClientResponse, kind: str, **fields: Any) -> dict[str, Any]:
    with anyio.fail_after(15):
        while True:
            for notice in await next_changes(reply):
                if notice["kind"] == kind and all(notice.get(k) == v for k, v in fields.items()):
                    return notice


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "mesh.yaml").write_text(MESH)
    return tmp_path


async def test_files_problems_and_proxies_arrive_live(folder: Path) -> None:
    async with (
        open_store("directory", {"path": str(folder)}) as store,
        serve_gui(store) as client,
        client.session.get(client.base + "/gui/events") as reply,
    ):
        assert reply.headers["Content-Type"].startswith("text/event-stream")
        assert await next_changes(reply) == [{"kind": "hello"}]

        drop(folder / "web-01.yaml", DATAPLANE.format(name="web-01"))
        notice = await wait_for(reply, "resource", name="web-01")
        assert notice == {
            "kind": "resource",
            "type": "Dataplane",
            "mesh": "default",
            "name": "web-01",
            "operation": "CREATE",
        }
        page = await client.json("/gui/api/meshes/default/dataplanes")
        assert [d["name"] for d in page["items"]] == ["web-01"]

        # A file that breaks Kuma's rules changes no resource: the store's problem notice is
        # what tells the page.
        drop(
            folder / "broken.yaml", DATAPLANE.format(name="broken").replace("kuma.io/service", "x")
        )
        await wait_for(reply, "problems")
        (problem,) = (await client.json("/gui/api/overview"))["problems"]
        assert problem["where"] == str(folder / "broken.yaml")
        assert 'tags["kuma.io/service"]: tag has to exist' in problem["reason"]
        (folder / "broken.yaml").unlink()
        await wait_for(reply, "problems")
        assert (await client.json("/gui/api/overview"))["problems"] == []

        client.connect("default", "web-01")
        assert await wait_for(reply, "proxy", name="web-01") == {
            "kind": "proxy",
            "mesh": "default",
            "name": "web-01",
            "online": True,
        }
        assert client.gui.feed.subscribers == 1
        # kuma-cp stopping: the feed closes and the page's stream ends at once.
        client.gui.feed.close()
        with anyio.fail_after(5):
            assert await reply.content.read() == b""

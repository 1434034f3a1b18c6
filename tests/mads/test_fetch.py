"""MADS over REST as Prometheus' kuma_sd fetches it: the first fetch answers at once, a fetch
with the current version is held until the assignments change (then answered with the change)
or until its fetch-timeout (304); unrelated changes neither wake it nor cost a computation;
bad requests get a 400 naming what is wrong; stopping answers held fetches. kuma-cp's MADS
component on a real (memory) store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import anyio
import orjson
import pytest

from kuma.cp.config import build_config
from kuma.cp.mads import serve_mads
from kuma.mads.http import FETCH_PATH
from kuma.mads.index import AssignmentIndex
from kuma.resources import Dataplane, Mesh, ResourceKey, from_document
from kuma.store import Store, open_store
from tests.fixtures.polling import until

pytestmark = pytest.mark.anyio

_METRICS = {"enabledBackend": "p", "backends": [{"name": "p", "type": "prometheus"}]}


def dataplane(name: str, address: str, mesh: str = "default") -> Dataplane:
    resource = from_document(
        {
            "type": "Dataplane",
            "mesh": mesh,
            "name": name,
            "networking": {
                "address": address,
                "inbound": [{"port": 80, "tags": {"kuma.io/service": name.split("-")[0]}}],
            },
        }
    )
    assert isinstance(resource, Dataplane)
    return resource


class Mads:
    def __init__(self, store: Store, index: AssignmentIndex, url: str) -> None:
        self.store, self.index, self.url = store, index, url

    async def fetch(
        self, body: dict[str, Any] | bytes | None = None, fetch_timeout: str | None = "0s"
    ) -> tuple[int, dict[str, Any] | None]:
        params = {} if fetch_timeout is None else {"fetch-timeout": fetch_timeout}
        data = body if isinstance(body, bytes) else orjson.dumps(body or {})
        url = self.url + FETCH_PATH
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=data, params=params) as reply,
        ):
            raw = await reply.read()
            return reply.status, orjson.loads(raw) if raw else None


@asynccontextmanager
async def running(default_timeout: str = "30s") -> AsyncIterator[Mads]:
    """kuma-cp's MADS component on a memory store holding a mesh with metrics and two
    Dataplanes; stopped (cancelled, as kuma-cp stops) when the block ends."""
    section = {"port": 0, "interface": "127.0.0.1", "defaultFetchTimeout": default_timeout}
    config = build_config({"monitoringAssignmentServer": section})
    async with open_store("memory", {}) as store, anyio.create_task_group() as tg:
        await store.create(Mesh(name="default", metrics=_METRICS))
        await store.create(dataplane("web-1", "10.0.0.1"))
        await store.create(dataplane("backend-1", "10.0.0.2"))
        index = AssignmentIndex()
        port = await tg.start(serve_mads, store, config, index)
        yield Mads(store, index, f"http://127.0.0.1:{port}")
        tg.cancel_scope.cancel()


def addresses(reply: dict[str, Any]) -> dict[str, str]:
    return {r["targets"][0]["name"]: r["targets"][0]["address"] for r in reply.get("resources", [])}


async def test_first_fetch_then_not_modified() -> None:
    async with running() as mads:
        status, reply = await mads.fetch({"node": {"id": "prometheus"}})
        assert status == 200
        assert reply is not None
        assert addresses(reply) == {"web-1": "10.0.0.1:5670", "backend-1": "10.0.0.2:5670"}
        assert reply["type_url"] == "type.googleapis.com/kuma.observability.v1.MonitoringAssignment"
        version = reply["version_info"]
        # Prometheus sends proto names; camelCase is protobuf JSON too.
        assert (await mads.fetch({"version_info": version}))[0] == 304
        assert (await mads.fetch({"versionInfo": version}))[0] == 304
        # Go durations: a negative timeout answers at once too.
        assert (await mads.fetch({"version_info": version}, fetch_timeout="-1s"))[0] == 304
        # null is protobuf JSON's default: no version yet.
        assert (await mads.fetch({"version_info": None}))[0] == 200
        # Another version (e.g. from before a restart): the whole state at once.
        status, again = await mads.fetch({"version_info": "stale"})
        assert status == 200
        assert again == reply
        # resource_names narrows the answer.
        status, one = await mads.fetch({"resource_names": ["/meshes/default/dataplanes/web-1"]})
        assert status == 200
        assert one is not None
        assert addresses(one) == {"web-1": "10.0.0.1:5670"}


async def test_long_poll_is_held_until_a_change_and_answers_with_it() -> None:
    async with running() as mads:
        _, first = await mads.fetch()
        assert first is not None
        version = first["version_info"]
        computed = mads.index.computed
        answers: list[tuple[int, dict[str, Any] | None]] = []

        async def poll() -> None:
            answers.append(await mads.fetch({"version_info": version}, fetch_timeout="30s"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(poll)
            await until(lambda: mads.index.waiting == 1)
            assert answers == []  # held, not answered
            # Unrelated changes first: another mesh's Dataplane (no metrics there), and the
            # Mesh's logging (not read by assignments). Then a real one.
            await mads.store.create(Mesh(name="quiet"))
            await mads.store.create(dataplane("db-1", "10.0.0.9", mesh="quiet"))
            stored = await mads.store.get(ResourceKey("Mesh", "", "default"))
            logged = Mesh(name="default", metrics=_METRICS, logging={"backends": []})
            await mads.store.update(logged, version=stored.meta.version)
            stored_dp = await mads.store.get(ResourceKey("Dataplane", "default", "web-1"))
            await mads.store.update(dataplane("web-1", "10.0.0.7"), version=stored_dp.meta.version)
        status, reply = answers[0]
        assert status == 200
        assert reply is not None
        # Had an unrelated change bumped the version, the held fetch would have been answered
        # before web-1 moved.
        assert addresses(reply) == {"web-1": "10.0.0.7:5670", "backend-1": "10.0.0.2:5670"}
        assert reply["version_info"] != version
        # One assignment built, web-1's: none for db-1 (its mesh has no metrics) nor for the
        # Mesh update, which left its prometheus backend as it was.
        assert mads.index.computed == computed + 1
        assert (await mads.fetch({"version_info": reply["version_info"]}))[0] == 304


async def test_held_fetch_times_out_as_not_modified_and_removal_is_a_change() -> None:
    async with running(default_timeout="200ms") as mads:
        _, first = await mads.fetch()
        assert first is not None
        # No fetch-timeout: Kuma's defaultFetchTimeout (0.2 s here) bounds the hold.
        known = {"version_info": first["version_info"]}
        assert (await mads.fetch(known, fetch_timeout=None))[0] == 304
        await mads.store.delete(ResourceKey("Dataplane", "default", "backend-1"))
        status, reply = await mads.fetch(known, fetch_timeout="10s")
        assert status == 200
        assert reply is not None
        assert addresses(reply) == {"web-1": "10.0.0.1:5670"}
        # Metrics off for the mesh: nothing left to scrape (jsonpb leaves resources out).
        stored = await mads.store.get(ResourceKey("Mesh", "", "default"))
        await mads.store.update(Mesh(name="default"), version=stored.meta.version)
        known = {"version_info": reply["version_info"]}
        status, empty = await mads.fetch(known, fetch_timeout="10s")
        assert status == 200
        assert empty is not None
        assert "resources" not in empty
        assert empty["version_info"] != reply["version_info"]


@pytest.mark.parametrize(
    ("body", "fetch_timeout", "title", "detail"),
    [
        (b"{not json", "0s", "Could not parse request body", "not JSON"),
        (b"[]", "0s", "Could not parse request body", "must be a JSON object"),
        (b'{"versoin_info": "1"}', "0s", "Could not parse request body", "'versoin_info'"),
        (b'{"resource_names": "a"}', "0s", "Could not parse request body", "resource_names"),
        (b'{"version_info": 3}', "0s", "Could not parse request body", "version_info"),
        (b"{}", "soon", "Could not parse fetch-timeout", "invalid duration 'soon'"),
    ],
)
async def test_bad_requests_are_400_naming_the_problem(
    body: bytes, fetch_timeout: str, title: str, detail: str
) -> None:
    async with running() as mads:
        status, reply = await mads.fetch(body, fetch_timeout=fetch_timeout)
        assert status == 400
        assert reply is not None
        assert reply["title"] == title
        assert detail in reply["detail"]
        # The server keeps serving.
        assert (await mads.fetch())[0] == 200


async def test_stopping_answers_held_fetches() -> None:
    """A stopping kuma-cp answers held fetches (304) instead of holding its shutdown for their
    whole timeout (an hour here; 30 s is the bound for it all)."""
    answers: list[tuple[int, dict[str, Any] | None]] = []
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg, running() as mads:
            _, first = await mads.fetch()
            assert first is not None
            known = {"version_info": first["version_info"]}

            async def poll() -> None:
                answers.append(await mads.fetch(known, fetch_timeout="1h"))

            tg.start_soon(poll)
            await until(lambda: mads.index.waiting == 1)
    assert [status for status, _ in answers] == [304]

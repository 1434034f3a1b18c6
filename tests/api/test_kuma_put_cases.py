"""Kuma's own REST cases for PUT (v2.7.29 ``pkg/api-server/testdata/resources/crud/put_*``),
run step by step against this project's API.

The steps (method, path, body, status, Kuma's response) come from
tests/data/kuma_validation_cases.json (scripts/kuma_validation_cases.py extracts them). An
error response must match Kuma's type, status, title, detail and invalid parameters exactly,
except for a body Kuma's JSON decoder refuses: its detail is Go's decoder message, so only the
status, the title and the absence of invalid parameters are compared. A resource response is
compared without the times (and without the origin label a zone control plane adds).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kuma.resources import from_document
from kuma.store.memory import MemoryStore

from .helpers import Api, serve

pytestmark = pytest.mark.anyio

DATA = Path(__file__).parent.parent / "data" / "kuma_validation_cases.json"
ALL_CASES: list[dict[str, Any]] = json.loads(DATA.read_text())["rest"]

#: The cases of resource kinds this project serves. The others (put_circuitbreaker,
#: put_faultinjection, put_healthcheck, put_meshservice, put_mtp, put_trafficroute,
#: put_traffictrace) are kinds it has no REST path for.
SERVED = ("put_dataplanes", "put_globalsecret", "put_meshes", "put_secret", "put_update_dataplanes")
CASES = [case for case in ALL_CASES if case["id"] in SERVED]
TIMES = ("creationTime", "modificationTime")
ZONE_ORIGIN = {"kuma.io/origin": "zone"}


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    store = MemoryStore()
    try:
        yield store
    finally:
        store.close()


def _comparable(document: dict[str, Any]) -> dict[str, Any]:
    if document.get("type") == "/std-errors" and document.get("title") == "Bad Request":
        # Go's JSON decoder's words; what must hold is: a 400, no invalid parameters.
        return {"status": document["status"], "title": document["title"]}
    kept = {k: v for k, v in document.items() if k not in TIMES}
    # Kuma's API tests run a zone control plane, which labels what it creates with its
    # origin; a standalone one (this project) does not.
    if kept.get("labels") == ZONE_ORIGIN:
        del kept["labels"]
    return kept


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
async def test_kuma_put_case(case: dict[str, Any], store: MemoryStore) -> None:
    for document in case["preload"]:
        await store.create(from_document(document))
    async with serve(store) as api:
        for number, step in enumerate(case["steps"]):
            where = f"{case['id']} step {number:02d} ({step['note'] or step['path']})"
            reply = await _send(api, step)
            assert reply.status == step["status"], (where, reply.body)
            if step["response"] is None:
                continue
            got = reply.json
            assert _comparable(got) == _comparable(step["response"]), where
            if step["response"].get("title") == "Bad Request":
                assert "invalid_parameters" not in got, where


async def _send(api: Api, step: dict[str, Any]) -> Any:
    if step["method"] == "PUT":
        return await api.put(step["path"], step["body"], content_type="application/json")
    return await api.get(step["path"])


def test_the_served_cases_are_all_there() -> None:
    assert [c["id"] for c in CASES] == list(SERVED)
    assert sum(len(c["steps"]) for c in CASES) == 19

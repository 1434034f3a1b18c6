"""Kuma's ``_rules`` inspect cases (resources in, JSON out; extracted by
scripts/extract_kuma_policy_cases.py --rules): the same answer from our API over a store that
holds the same resources."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from kuma.resources import decode
from kuma.store.memory import MemoryStore
from tests.api.helpers import serve

pytestmark = pytest.mark.anyio
CASES = Path(__file__).parent / "kuma_rules"


@pytest.mark.parametrize(
    "case", sorted(p.name.removesuffix(".input.yaml") for p in CASES.glob("*.input.yaml"))
)
async def test_kuma_rules_case(case: str) -> None:
    text = (CASES / f"{case}.input.yaml").read_text()
    first = text.splitlines()[0]  # "#/meshes/default/dataplanes/dp-1/_rules 200"
    path, status = first.removeprefix("#").split()
    store = MemoryStore()
    try:
        for resource in decode(text):
            await store.create(resource)
        async with serve(store) as api:
            reply = await api.get(path)
    finally:
        store.close()
    assert reply.status == int(status)
    golden = orjson.loads((CASES / f"{case}.golden.json").read_bytes())
    assert reply.json == golden

"""kuma.jsonbytes: JSON kept in memory costs what it holds."""

from __future__ import annotations

import tracemalloc

import orjson

from kuma import jsonbytes


def test_same_bytes_as_orjson() -> None:
    document = {"b": 1, "a": [1, "x", None], "c": {"z": 1.5, "y": True}}
    assert jsonbytes.dumps(document) == orjson.dumps(document)
    assert jsonbytes.dumps(document, sort_keys=True) == orjson.dumps(
        document, option=orjson.OPT_SORT_KEYS
    )


def test_a_kept_small_document_costs_about_its_size() -> None:
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        kept = [jsonbytes.dumps({"connectionTimeout": "5s", "n": n}) for n in range(200)]
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    # ~40 bytes of JSON plus a bytes object's header each; orjson's own result holds 4 KB.
    assert grown / len(kept) < 256, f"{grown / len(kept):.0f} bytes per kept document"

"""Kuma's own validator test cases (v2.7.29), run against this project's codec and validation.

The cases live in tests/data/kuma_validation_cases.json, extracted from Kuma's Ginkgo tables by
scripts/kuma_validation_cases.py (documents and expected violations are facts about Kuma's
behaviour; none of its code is used). Every case must give exactly Kuma's violations (fields,
messages, order), except the few listed below with the reason they differ.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kuma.resources import DecodeError
from kuma.resources.codec import from_document
from kuma.resources.validation import validate

DATA = Path(__file__).parent.parent / "data" / "kuma_validation_cases.json"
CASES: list[dict[str, Any]] = json.loads(DATA.read_text())["validators"]

#: Cases this project answers differently on purpose, with what it answers instead.
#: MeshService ``backendRef`` outbounds are an experimental Kuma 2.7 feature that needs the
#: MeshService resource, which this project does not have: such an outbound could not be
#: served, so the codec refuses the key instead of accepting and ignoring it.
BACKEND_REF = "networking.outbound[0].backendRef: unknown field"
DIFFERENT: dict[str, tuple[str, str]] = {
    "dataplane_validator_test/13": ("MeshService backendRef is not supported", BACKEND_REF),
    "dataplane_validator_test/54": ("MeshService backendRef is not supported", BACKEND_REF),
    "dataplane_validator_test/55": ("MeshService backendRef is not supported", BACKEND_REF),
}


def _outcome(case: dict[str, Any]) -> list[dict[str, str]] | str:
    document = yaml.safe_load(case["document"]) or {}
    # Kuma's Mesh cases hold only the spec; the Dataplane and zone cases name themselves.
    document.setdefault("type", case["kind"])
    document.setdefault("name", "kuma-case")
    try:
        resource = from_document(document)
    except DecodeError as error:
        return str(error)
    return [{"field": v.field, "message": v.message} for v in validate(resource)]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_kuma_validator_case(case: dict[str, Any]) -> None:
    outcome = _outcome(case)
    if case["id"] in DIFFERENT:
        _reason, answer = DIFFERENT[case["id"]]
        assert outcome == answer, case["source"]
        return
    if case.get("unordered") and isinstance(outcome, list):
        # Kuma's ErrorCase(s) compare with ConsistOf (some of its messages follow Go map order).
        outcome.sort(key=lambda v: (v["field"], v["message"]))
        expected = sorted(case["violations"], key=lambda v: (v["field"], v["message"]))
        assert outcome == expected, case["source"]
        return
    assert outcome == case["violations"], case["source"]


def test_every_kind_of_case_was_extracted() -> None:
    """The data file is what the extraction script writes from Kuma v2.7.29 (not hand-made)."""
    kinds = {(c["kind"], c["valid"]) for c in CASES}
    assert kinds == {
        (k, v)
        for k in (
            "Dataplane",
            "ZoneIngress",
            "ZoneEgress",
            "Mesh",
            "ExternalService",
            "MeshGateway",
        )
        for v in (True, False)
    }
    assert len(CASES) == 139

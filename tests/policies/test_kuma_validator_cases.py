"""Kuma's own validator cases for each implemented policy kind (extracted from Kuma's tests by
scripts/extract_kuma_policy_cases.py): the same violations, in any order."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from kuma.resources import DecodeError, from_document, validate
from kuma.resources.policy import POLICY_KINDS

CASES = Path(__file__).parent / "kuma_cases"
#: Cases where this project is knowingly stricter than Kuma, with the decode error it gives.
STRICTER = {
    # Kuma's example puts ``set``/``add`` beside ``requestHeadersToAdd: null`` (a YAML
    # indentation slip); Kuma's decoder drops unknown keys there, ours names them.
    "meshhealthcheck: full example": "spec.to[0].default.http.set: unknown field",
    # Kuma's case writes a tag value as a YAML number (``port: 6000``); tags are strings here.
    "meshtcproute: accepts MeshGateway with listener tags targeted route": (
        "spec.targetRef.tags[...]: Expected `str`, got `int`"
    ),
    # Kuma's validator lets an unknown hash policy type (``SourceIP``) through and its plugin
    # then dereferences nothing; here the type is an enum.
    "meshloadbalancingstrategy: maglev error": (
        "spec.to[0].default.loadBalancer.maglev.hashPolicies[2].type: Invalid enum value"
    ),
}
#: Cases where this project is knowingly laxer. The model does not tell ``to: []`` from no
#: ``to`` (Kuma refuses only the explicit empty list; such a policy does nothing here).
LAXER = {"meshhealthcheck: to field is an empty array"}
KINDS = {kind.name.lower(): kind.name for kind in POLICY_KINDS.values()}


def _cases() -> list[Any]:
    params = []
    for path in sorted(CASES.glob("*.yaml")):
        kind = KINDS[path.stem]
        for case in yaml.safe_load(path.read_text()):
            params.append(pytest.param(kind, case, id=f"{path.stem}: {case['name']}"))
    return params


@pytest.mark.parametrize(("kind", "case"), _cases())
def test_kuma_case(kind: str, case: dict[str, Any]) -> None:
    document = {"type": kind, "mesh": "default", "name": "p", "spec": case["spec"]}
    expected = sorted((v["field"], v["message"]) for v in case["violations"])
    stricter = STRICTER.get(f"{kind.lower()}: {case['name']}")
    if stricter is not None:
        with pytest.raises(DecodeError, match=re.escape(stricter)):
            from_document(document)
        return
    if f"{kind.lower()}: {case['name']}" in LAXER:
        expected = []
    try:
        policy = from_document(document)
    except DecodeError as exc:
        # Kuma's CRD schema refuses some inputs before its validator runs; ours is the codec.
        pytest.fail(f"decode error {exc} where Kuma expects {expected}")
    found = sorted((v.field, v.message) for v in validate(policy))
    assert found == expected

"""Extract the validator cases of Kuma's policy tests into YAML data for our tests.

Facts carry over, code does not: this reads Kuma's ``validator_test.go`` of a policy (from
the bare git mirror of kumahq/kuma) and writes only the inputs and the expected violations:
``tests/policies/kuma_cases/<policy>.yaml`` with ``{name, spec, violations}`` entries
(``violations: []`` for the "should pass validation" table).

    python scripts/extract_kuma_policy_cases.py meshtimeout meshretry meshcircuitbreaker
    python scripts/extract_kuma_policy_cases.py --rules empty overriding_meshtimeout ...

``--rules`` copies cases of Kuma's ``_rules`` inspect endpoint (the resources in, the JSON
out) to ``tests/policies/kuma_rules/<case>.{input.yaml,golden.json}``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

MIRROR = "/work/.mirror/kumahq+kuma/repo"
TAG = "v2.7.29"
OUT = Path(__file__).resolve().parent.parent / "tests" / "policies" / "kuma_cases"

_ENTRY = re.compile(r'Entry\(\s*"((?:[^"\\]|\\.)*)",\s*')
_BACKTICK = re.compile(r"`([^`]*)`", re.S)


def _source(policy: str) -> str:
    # Most policies name the file validator_test.go; the route kinds validation_test.go.
    for name in ("validator_test.go", "validation_test.go"):
        path = f"pkg/plugins/policies/{policy}/api/v1alpha1/{name}"
        shown = subprocess.run(
            ["git", "--git-dir", MIRROR, "show", f"{TAG}:{path}"], capture_output=True, text=True
        )
        if shown.returncode == 0:
            return shown.stdout
    raise SystemExit(f"{policy}: no validator test in Kuma {TAG}")


#: Kuma's message constants (pkg/core/validators/messages.go) as the tests name them.
_CONSTANTS = {
    "validators.MustBeDefined": "must be defined",
    "validators.MustNotBeDefined": "must not be defined",
    "validators.MustNotBeEmpty": "must not be empty",
}
_ERROR_CASE = re.compile(r'ErrorCases?\(\s*"((?:[^"\\]|\\.)*)",')
_GO_STRING = r'(`[^`]*`|"(?:[^"\\]|\\.)*"|validators\.\w+)'
_VIOLATION = re.compile(r"Field:\s*" + _GO_STRING + r",\s*Message:\s*" + _GO_STRING, re.S)


def _go_string(literal: str) -> str:
    if literal.startswith("`"):
        return literal[1:-1]
    if literal.startswith('"'):
        return str(json.loads(literal))
    return _CONSTANTS[literal]


def _resource_spec(document: dict[str, Any]) -> dict[str, Any]:
    """The spec of a whole resource in universal YAML (``type``/``mesh``/``name`` dropped)."""
    return {k: v for k, v in document.items() if k not in ("type", "mesh", "name")}


def _error_cases(text: str) -> list[dict[str, Any]]:
    """The ``ErrorCase(name, Violation{...}, yaml)`` / ``ErrorCases(name, []Violation, yaml)``
    form (DescribeErrorCases), and ``Entry(name, yaml)`` of DescribeValidCases."""
    cases: list[dict[str, Any]] = []
    for match in _ERROR_CASE.finditer(text):
        start = text.find("`\ntype:", match.end())
        end = text.find("`", start + 1)
        violations = [
            {"field": _go_string(field), "message": _go_string(message)}
            for field, message in _VIOLATION.findall(text[match.end() : start])
        ]
        document = yaml.safe_load(text[start + 1 : end])
        cases.append(
            {"name": match.group(1), "spec": _resource_spec(document), "violations": violations}
        )
    valid = text.find("DescribeValidCases(")
    for match in _ENTRY.finditer(text, valid if valid >= 0 else len(text)):
        body = _BACKTICK.match(text, match.end())
        if body is not None:
            document = yaml.safe_load(body.group(1))
            cases.append(
                {"name": match.group(1), "spec": _resource_spec(document), "violations": []}
            )
    return cases


def extract(policy: str) -> list[dict[str, Any]]:
    text = _source(policy)
    if "DescribeErrorCases(" in text:
        return _error_cases(text)
    cases: list[dict[str, Any]] = []
    for match in _ENTRY.finditer(text):
        name = match.group(1)
        rest = text[match.end() :]
        if rest.startswith("`"):
            body = _BACKTICK.match(rest)
            if body is None:
                continue
            cases.append({"name": name, "spec": yaml.safe_load(body.group(1)), "violations": []})
            continue
        if not rest.startswith("testCase{"):
            continue
        block = rest[: rest.find("}),")]
        fields = dict(re.findall(r"(\w+):\s*`([^`]*)`", block, re.S))
        if "inputYaml" not in fields or "expected" not in fields:
            continue
        expected = yaml.safe_load(fields["expected"]) or {}
        cases.append(
            {
                "name": name,
                "spec": yaml.safe_load(fields["inputYaml"]),
                "violations": [
                    {"field": v["field"], "message": v["message"]}
                    for v in expected.get("violations", [])
                ],
            }
        )
    return cases


RULES = "pkg/api-server/testdata/resources/inspect/dataplanes/_rules"


def _show(path: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", MIRROR, "show", f"{TAG}:{path}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def copy_rules(cases: list[str]) -> None:
    out = OUT.parent / "kuma_rules"
    out.mkdir(parents=True, exist_ok=True)
    for case in cases:
        for suffix in ("input.yaml", "golden.json"):
            (out / f"{case}.{suffix}").write_text(_show(f"{RULES}/{case}.{suffix}"))
        print(f"_rules {case}")


def main(policies: list[str]) -> None:
    if policies[:1] == ["--rules"]:
        copy_rules(policies[1:])
        return
    OUT.mkdir(parents=True, exist_ok=True)
    for policy in policies:
        cases = extract(policy)
        header = (
            f"# Extracted from Kuma {TAG} pkg/plugins/policies/{policy} by {Path(__file__).name}\n"
        )
        (OUT / f"{policy}.yaml").write_text(header + yaml.safe_dump(cases, sort_keys=False))
        print(f"{policy}: {len(cases)} cases")


if __name__ == "__main__":
    main(sys.argv[1:])

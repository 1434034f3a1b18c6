#!/usr/bin/env python3
"""Extract Kuma's own validation test cases into tests/data/kuma_validation_cases.json.

Kuma (v2.7.29) keeps its validator cases in Ginkgo tables (``Entry("what", <yaml>)`` or
``Entry("what", testCase{<resource>: `yaml`, expected: `violations`})``) and its REST cases as
files (``put_<x>.input.yaml`` with one ``#<path> <status> method=PUT`` line per step, then
``put_<x>_<NN>.request.json`` / ``put_<x>_<NN>.golden.json``). This script reads those files
from a Kuma git repository and writes the facts (documents, expected violations, requests,
expected responses) as data; tests/resources/test_kuma_cases.py and
tests/api/test_kuma_put_cases.py run every case against this project.

Usage (the default repository is the mirror this project's team uses):

    python3 scripts/kuma_validation_cases.py [--git-dir DIR] [--ref v2.7.29] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

DEFAULT_GIT_DIR = "/work/.mirror/kumahq+kuma/repo"
DEFAULT_REF = "v2.7.29"
OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "kuma_validation_cases.json"

VALIDATOR_TESTS = {
    "Dataplane": "pkg/core/resources/apis/mesh/dataplane_validator_test.go",
    "ZoneIngress": "pkg/core/resources/apis/mesh/zone_ingress_validator_test.go",
    "ZoneEgress": "pkg/core/resources/apis/mesh/zone_egress_validator_test.go",
    "Mesh": "pkg/core/resources/apis/mesh/mesh_validator_test.go",
    "ExternalService": "pkg/core/resources/apis/mesh/external_service_validator_test.go",
    "MeshGateway": "pkg/core/resources/apis/mesh/gateway_validator_test.go",
}
CRUD_DIR = "pkg/api-server/testdata/resources/crud"


class Source:
    def __init__(self, git_dir: str, ref: str) -> None:
        self.git_dir, self.ref = git_dir, ref

    def show(self, path: str) -> str:
        return subprocess.run(
            ["git", "--git-dir", self.git_dir, "show", f"{self.ref}:{path}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def files(self, directory: str) -> list[str]:
        listing = subprocess.run(
            ["git", "--git-dir", self.git_dir, "ls-tree", "--name-only", self.ref, directory + "/"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return [line.rsplit("/", 1)[-1] for line in listing.splitlines()]


# --- a small Go lexer: enough for string literals, braces and identifiers ---------------------

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<raw>`[^`]*`)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<number>[0-9][0-9.]*)
  | (?P<punct>[(){}\[\],:;=&*!<>+\-|/.])
    """,
    re.VERBOSE | re.DOTALL,
)


def tokens(text: str) -> list[tuple[str, str]]:
    result: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise ValueError(f"cannot lex Go at {text[position : position + 40]!r}")
        kind = match.lastgroup or ""
        if kind not in ("space", "comment"):
            result.append((kind, match.group()))
        position = match.end()
    return result


def go_string(kind: str, value: str) -> str:
    if kind == "raw":
        return value[1:-1]
    decoded: str = json.loads(value)  # Go's interpreted strings here use JSON-compatible escapes
    return decoded


def _closing(toks: list[tuple[str, str]], start: int) -> int:
    """Index of the token closing the bracket opened at ``start``."""
    pairs = {"(": ")", "{": "}", "[": "]"}
    depth = 0
    for index in range(start, len(toks)):
        value = toks[index][1]
        if toks[index][0] != "punct":
            continue
        if value in pairs:
            depth += 1
        elif value in pairs.values():
            depth -= 1
            if depth == 0:
                return index
    raise ValueError("unbalanced brackets")


def _entry(toks: list[tuple[str, str]], start: int, end: int) -> tuple[str, dict[str, str]]:
    """An ``Entry(...)``'s description and its string arguments (positional: ``_``)."""
    kind, value = toks[start]
    description = go_string(kind, value)
    fields: dict[str, str] = {}
    index = start + 1
    while index < end:
        kind, value = toks[index]
        if kind in ("raw", "string"):
            fields["_"] = go_string(kind, value)
        elif (
            kind == "ident"
            and index + 2 < end
            and toks[index + 1] == ("punct", ":")
            and toks[index + 2][0] in ("raw", "string")
        ):
            fields[value] = go_string(*toks[index + 2])
            index += 2
        index += 1
    return description, fields


def _error_case(toks: list[tuple[str, str]], start: int, end: int) -> dict[str, Any]:
    """``ErrorCase(s)("what", validators.Violation{Field: .., Message: ..} (or a slice of
    them), yaml)``: Kuma compares these with ConsistOf, in any order."""
    description = go_string(*toks[start])
    violations: list[dict[str, str]] = []
    document = ""
    index = start + 1
    while index < end:
        kind, value = toks[index]
        if kind == "ident" and value in ("Field", "Message") and toks[index + 1] == ("punct", ":"):
            text = go_string(*toks[index + 2])
            if value == "Field":
                violations.append({"field": text, "message": ""})
            else:
                violations[-1]["message"] = text
            index += 2
        elif kind in ("raw", "string"):
            document = go_string(kind, value)
        index += 1
    return {"description": description, "violations": violations, "document": document}


def validator_cases(source: Source, kind: str, path: str) -> list[dict[str, Any]]:
    toks = tokens(source.show(path))
    cases: list[dict[str, Any]] = []
    table = ""
    index = 0
    while index < len(toks):
        kind_, value = toks[index]
        if kind_ == "ident" and value == "DescribeTable":
            table = go_string(*toks[index + 2])
        if kind_ == "ident" and value == "Entry" and toks[index + 1] == ("punct", "("):
            end = _closing(toks, index + 1)
            description, fields = _entry(toks, index + 2, end)
            document = fields.get("_") or next(
                (v for k, v in fields.items() if k not in ("expected", "_")), ""
            )
            expected_text = fields.get("expected", "")
            expected = yaml.safe_load(expected_text) if expected_text.strip() else None
            violations = (expected or {}).get("violations", [])
            cases.append(
                {
                    "id": f"{Path(path).stem}/{len(cases):02d}",
                    "kind": kind,
                    "source": f"{path} ({table}): {description}",
                    "valid": not violations,
                    "document": _dedent(document),
                    "violations": [
                        {"field": v.get("field", ""), "message": v["message"]} for v in violations
                    ],
                }
            )
            index = end
        if kind_ == "ident" and value in ("ErrorCase", "ErrorCases"):
            end = _closing(toks, index + 1)
            case = _error_case(toks, index + 2, end)
            cases.append(
                {
                    "id": f"{Path(path).stem}/{len(cases):02d}",
                    "kind": kind,
                    "source": f"{path} ({value}): {case['description']}",
                    "valid": False,
                    "unordered": True,
                    "document": _dedent(case["document"]),
                    "violations": case["violations"],
                }
            )
            index = end
        index += 1
    return cases


def _dedent(text: str) -> str:
    lines = text.expandtabs(4).splitlines()
    indents = [len(line) - len(line.lstrip()) for line in lines if line.strip()]
    cut = min(indents, default=0)
    return "\n".join(line[cut:] for line in lines).strip("\n") + "\n"


# --- REST cases ---------------------------------------------------------------------------------

_STEP = re.compile(r"^#(?P<path>/\S*) (?P<status>\d{3})(?: method=(?P<method>[A-Z]+))?\s*$")


def crud_cases(source: Source) -> list[dict[str, Any]]:
    names = set(source.files(CRUD_DIR))
    cases: list[dict[str, Any]] = []
    for input_name in sorted(
        n for n in names if n.startswith("put_") and n.endswith(".input.yaml")
    ):
        stem = input_name.removesuffix(".input.yaml")
        text = source.show(f"{CRUD_DIR}/{input_name}")
        steps: list[dict[str, Any]] = []
        note = ""
        for line in text.splitlines():
            match = _STEP.match(line)
            if match is None:
                if line.startswith("#"):
                    note = line.lstrip("# ").strip()
                continue
            number = f"{len(steps):02d}"
            request = f"{stem}_{number}.request.json"
            golden = f"{stem}_{number}.golden.json"
            steps.append(
                {
                    "note": note,
                    "method": match.group("method") or "GET",
                    "path": match.group("path"),
                    "status": int(match.group("status")),
                    "body": source.show(f"{CRUD_DIR}/{request}") if request in names else None,
                    "response": json.loads(source.show(f"{CRUD_DIR}/{golden}"))
                    if golden in names
                    else None,
                }
            )
            note = ""
        preload = [d for d in yaml.safe_load_all(text) if d is not None]
        cases.append(
            {"id": stem, "source": f"{CRUD_DIR}/{input_name}", "preload": preload, "steps": steps}
        )
    return cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--git-dir", default=DEFAULT_GIT_DIR)
    parser.add_argument("--ref", default=DEFAULT_REF)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    source = Source(args.git_dir, args.ref)
    data = {
        "kuma": args.ref,
        "validators": [
            case
            for kind, path in VALIDATOR_TESTS.items()
            for case in validator_cases(source, kind, path)
        ],
        "rest": crud_cases(source),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    rest_steps = sum(len(c["steps"]) for c in data["rest"])
    print(f"{len(data['validators'])} validator cases, {rest_steps} REST steps -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``kumactl apply -v k=v``: mustache-style ``{{ k }}`` variables in the applied file.

Like Kuma, ``{{ name }}``, ``{{{ name }}}`` and ``{{& name }}`` are replaced by the value given
with ``-v name=value`` (names may hold dots: ``-v net.address=10.0.0.1``). Unlike Kuma (whose
mustache renders an unknown name as nothing, which then surfaces as some unrelated validation
error), a variable without a value is an error that names it. Values are inserted verbatim:
this is YAML, not HTML, so nothing is escaped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from .errors import CliError

_VARIABLE = re.compile(r"\{\{\{\s*([^{}\s]+)\s*\}\}\}|\{\{&?\s*([^{}\s]+)\s*\}\}")


def parse_assignments(pairs: Iterable[str]) -> dict[str, str]:
    """``["a=1", "b=x=y"]`` -> ``{"a": "1", "b": "x=y"}``."""
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise CliError(f"invalid variable {pair!r}: expected NAME=VALUE")
        values[name] = value
    return values


def render(text: str, values: Mapping[str, str]) -> str:
    missing: set[str] = set()

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            missing.add(name)
            return match.group(0)
        return values[name]

    rendered = _VARIABLE.sub(substitute, text)
    if missing:
        names = ", ".join(sorted(missing))
        raise CliError(f"variable(s) without a value: {names} (give each with -v NAME=VALUE)")
    return rendered

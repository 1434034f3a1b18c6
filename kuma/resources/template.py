"""Mustache-style variables in resource templates (``kumactl apply -v``, ``kuma-dp run -v``).

``{{ name }}``, ``{{{ name }}}`` and ``{{& name }}`` are replaced by the value verbatim (no HTML
escaping: the output is YAML, not a page). A variable without a value is an error naming every
such variable, never an empty string, so a forgotten ``-v`` cannot produce a half-filled
resource.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

_VARIABLE = re.compile(r"\{\{\{\s*([^{}\s]+)\s*\}\}\}|\{\{&?\s*([^{}\s]+)\s*\}\}")


class TemplateError(ValueError):
    """A malformed ``NAME=VALUE`` pair or variables without values."""


class MissingVariablesError(TemplateError):
    def __init__(self, names: Iterable[str]) -> None:
        self.names = sorted(set(names))
        super().__init__(f"variable(s) without a value: {', '.join(self.names)}")


def parse_assignments(pairs: Iterable[str]) -> dict[str, str]:
    """``["a=1", "b=x=y", "c="]`` -> ``{"a": "1", "b": "x=y", "c": ""}``."""
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise TemplateError(f"invalid variable {pair!r}: expected NAME=VALUE")
        values[name] = value
    return values


def render(text: str, values: Mapping[str, str]) -> str:
    """Fill in every variable; MissingVariablesError names all that have no value."""
    missing: set[str] = set()

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            missing.add(name)
            return match.group(0)
        return values[name]

    rendered = _VARIABLE.sub(substitute, text)
    if missing:
        raise MissingVariablesError(missing)
    return rendered

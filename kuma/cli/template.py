"""``kumactl apply -v k=v``: mustache-style ``{{ k }}`` variables in the applied file.

Like Kuma, ``{{ name }}``, ``{{{ name }}}`` and ``{{& name }}`` are replaced by the value given
with ``-v name=value`` (names may hold dots: ``-v net.address=10.0.0.1``). Unlike Kuma (whose
mustache renders an unknown name as nothing, which then surfaces as some unrelated validation
error), a variable without a value is an error that names it. Values are inserted verbatim:
this is YAML, not HTML, so nothing is escaped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from kuma.resources import template

from .errors import CliError


def parse_assignments(pairs: Iterable[str]) -> dict[str, str]:
    """``["a=1", "b=x=y"]`` -> ``{"a": "1", "b": "x=y"}``."""
    try:
        return template.parse_assignments(pairs)
    except template.TemplateError as exc:
        raise CliError(str(exc)) from None


def render(text: str, values: Mapping[str, str]) -> str:
    try:
        return template.render(text, values)
    except template.MissingVariablesError as exc:
        raise CliError(f"{exc} (give each with -v NAME=VALUE)") from None

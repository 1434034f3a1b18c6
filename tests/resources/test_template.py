from __future__ import annotations

import pytest

from kuma.resources.template import (
    MissingVariablesError,
    TemplateError,
    parse_assignments,
    render,
)


def test_every_form_is_filled_verbatim() -> None:
    values = {"a": "1", "b.c": "<x & y>"}
    assert render("{{a}} {{ a }} {{{b.c}}} {{& b.c }} {{ }} {x}", values) == (
        "1 1 <x & y> <x & y> {{ }} {x}"
    )


def test_missing_variables_are_all_named() -> None:
    with pytest.raises(MissingVariablesError) as caught:
        render("{{ b }} {{a}} {{ b }}", {})
    assert caught.value.names == ["a", "b"]
    assert str(caught.value) == "variable(s) without a value: a, b"


def test_assignments() -> None:
    assert parse_assignments(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    for bad in ("novalue", "=1"):
        with pytest.raises(TemplateError, match="expected NAME=VALUE"):
            parse_assignments([bad])

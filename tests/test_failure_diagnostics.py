"""A failed test's report carries the diagnostics of its fixtures' components."""

from __future__ import annotations

import pytest

INNER = """
from unittest import mock

import pytest

class Component:
    def __init__(self, broken: bool = False) -> None:
        self.broken = broken

    def failure_diagnostics(self):
        if self.broken:
            raise RuntimeError("admin API gone")
        return [("component output", "line one\\nthe last words")]

@pytest.fixture
def component():
    return Component()

@pytest.fixture
def broken():
    return Component(broken=True)

def test_fails(component):
    assert False, "the body failed"

def test_passes(component):
    pass

def test_fails_with_a_broken_diagnostic(broken):
    assert False, "the body failed too"

@pytest.fixture
def mocked():
    return mock.Mock()  # has every attribute, failure_diagnostics too, returning a Mock

def test_fails_beside_a_mock(mocked):
    assert False, "the body failed beside a mock"
"""


def test_a_failed_test_shows_its_components_diagnostics(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_inprocess(
        "-p", "tests.fixtures.diagnostics", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=1, failed=3)
    text = result.stdout.str()
    # Shown once: under the failed test, not the passing one.
    assert text.count("component output") == 1
    assert "the last words" in text
    # A diagnostic that raises is reported as such, and the failure itself still shows.
    assert "broken: diagnostics failed" in text
    assert "admin API gone" in text
    assert "the body failed too" in text
    assert "mocked: diagnostics failed" in text
    assert "the body failed beside a mock" in text


def test_tail_keeps_the_end() -> None:
    from tests.fixtures.diagnostics import tail

    text = "\n".join(str(n) for n in range(1000))
    kept = tail(text, 10)
    assert kept.splitlines() == ["[... 990 earlier lines]", *(str(n) for n in range(990, 1000))]
    assert tail("a\nb", 10) == "a\nb"

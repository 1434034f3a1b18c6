"""kuma-load without the 'load' extra says which extra to install, and runs with it."""

from __future__ import annotations

import pytest

from kuma.load import entry


def test_a_missing_dependency_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(entry, "LOAD_EXTRA", ("psutil", "no_such_module_for_kuma_load"))
    assert entry.main(["run", "--help"]) == 2
    message = capsys.readouterr().err
    assert "no_such_module_for_kuma_load" in message
    assert "psutil" not in message.split("needs")[1].split(",")[0]
    assert "pip install -e '.[load]'" in message


def test_with_the_extra_installed_it_runs_the_harness(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # psutil is in the test extra too; matplotlib may be absent here (CI installs '.[test]').
    monkeypatch.setattr(entry, "LOAD_EXTRA", ("psutil",))
    assert entry.missing_modules() == []
    with pytest.raises(SystemExit) as exited:
        entry.main(["run", "--help"])
    assert exited.value.code == 0
    assert "scenarios" in capsys.readouterr().out

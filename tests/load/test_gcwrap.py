"""``kuma.load.gcwrap``: each collection is reported with its wall and CPU time, counts and
generation sizes, in the line format the harness parses (``kuma.load.procs``)."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from kuma.load.gcwrap import _Recorder
from kuma.load.procs import ManagedProcess


def _fields(line: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in line.split()[1:])


def test_every_collection_is_recorded_with_its_cpu_time_and_young_generation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gc.log"
    recorder = _Recorder(
        {"KUMA_LOAD_GC_FILE": str(path), "KUMA_LOAD_GC_DETAIL": "1", "KUMA_LOAD_GC_LOG_MS": "0"}
    )
    gc.callbacks.append(recorder)
    gc.disable()  # so that the 1,000 lists are all still young at the collection below
    try:
        young: list[list[int]] = [[] for _ in range(1000)]
        gc.collect(0)
    finally:
        gc.enable()
        gc.callbacks.remove(recorder)
        assert recorder.file is not None
        recorder.file.close()
    del young
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    fields = _fields(lines[-1])
    assert fields["gen"] == "0"
    assert float(fields["cpu_ms"]) >= 0.0
    assert fields["uncollectable"] == "0"
    assert len(fields["count"].split(",")) == 3
    assert int(fields["young"].split(",")[0]) >= 1000
    # The harness reads the generation and the wall time from the stderr line.
    printed = capsys.readouterr().err.splitlines()[-1]
    process = object.__new__(ManagedProcess)  # only its parser, no process started
    process.gc_pauses = []
    process._gc_pause(printed)
    assert [(gen, ms) for _, gen, ms in process.gc_pauses] == [(0, float(fields["ms"]))]


@pytest.mark.parametrize("mode", ["quiet", "never"])
def test_the_freezer_restricted_for_experiments(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from kuma.cp.gc_freeze import SettledHeapFreezer
    from kuma.load.gcwrap import _restrict_freezer

    # Restored after the test: the wrapper patches the class for the process it runs.
    monkeypatch.setattr(SettledHeapFreezer, "__init__", SettledHeapFreezer.__init__)
    monkeypatch.setattr(SettledHeapFreezer, "tick", SettledHeapFreezer.tick)
    _restrict_freezer(mode)
    freezer = SettledHeapFreezer(quiet_allocations=1_000_000)
    assert freezer.young_freezes == 0
    freezer._last += 2 * freezer.quiet_allocations  # activity, then a quiet look
    freezer.tick()
    assert freezer.tick() is (mode == "quiet")
    gc.unfreeze()

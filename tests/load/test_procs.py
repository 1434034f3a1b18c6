"""kuma-load's process handling: a control plane that never reports ready is stopped, not left
running after the harness gives up (it was, as an orphan of init)."""

from __future__ import annotations

from typing import Any

import pytest

from kuma.load import procs


def test_a_control_plane_never_ready_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[procs.ManagedProcess] = []
    original = procs.ManagedProcess.__init__

    def record(self: procs.ManagedProcess, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        started.append(self)

    monkeypatch.setattr(procs.ManagedProcess, "__init__", record)
    # Far too short for kuma-cp to start: the wait times out while it is running.
    with pytest.raises(RuntimeError, match="is ready"):
        procs.start_control_plane("kuma", store="memory", location="", ready_timeout=0.05)
    assert len(started) == 1
    assert started[0].child.proc.poll() is not None

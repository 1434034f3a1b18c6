"""Issue 17 (README): one log line per bulk load instead of one per resource, per-resource lines
at debug, and no ``mesh=None`` for mesh-less types."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import anyio
import pytest

from kuma.cp.change_log import LINES_PER_BURST, ChangeLog
from kuma.resources import Mesh, ResourceMeta, from_document
from kuma.store import Operation, ResourceEvent

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def event(resource: object, version: int) -> ResourceEvent:
    return ResourceEvent(Operation.CREATE, resource, ResourceMeta(str(version), NOW, NOW), version)  # type: ignore[arg-type]


def dataplane(index: int) -> object:
    return from_document(
        {
            "type": "Dataplane",
            "mesh": "default",
            "name": f"dp-{index}",
            "networking": {
                "address": "10.0.0.1",
                "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web"}}],
            },
        }
    )


def info_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "kuma.cp" and r.levelno == logging.INFO]


async def wait_for_lines(caplog: pytest.LogCaptureFixture, count: int) -> None:
    with anyio.fail_after(10):
        while True:
            if len(info_lines(caplog)) >= count:
                return
            await anyio.sleep(0.02)


async def test_a_bulk_load_is_one_line_and_a_lone_change_its_own(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="kuma.cp")
    changes = ChangeLog()
    async with anyio.create_task_group() as tg:
        tg.start_soon(changes.run)
        for index in range(2000):
            changes.add(event(dataplane(index), index + 1))
        await wait_for_lines(caplog, LINES_PER_BURST + 1)
        changes.add(event(Mesh(name="other"), 5000))
        await wait_for_lines(caplog, LINES_PER_BURST + 2)
        tg.cancel_scope.cancel()
    *first, bulk, lone = info_lines(caplog)
    assert [r.fields["name"] for r in first] == [f"dp-{i}" for i in range(LINES_PER_BURST)]  # type: ignore[attr-defined]
    assert bulk.getMessage() == "resources changed"
    rest = 2000 - LINES_PER_BURST
    assert bulk.fields == {"more": rest, "create": rest, "types": f"Dataplane:{rest}"}  # type: ignore[attr-defined]
    assert lone.getMessage() == "resource changed"
    assert "mesh" not in lone.fields  # type: ignore[attr-defined]
    assert lone.fields["name"] == "other"  # type: ignore[attr-defined]
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG and r.name == "kuma.cp"]
    assert len(debug) == 2001
    assert debug[0].fields["mesh"] == "default"  # type: ignore[attr-defined]

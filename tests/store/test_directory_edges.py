"""The directory store's rough edges: odd files, a vanished folder, parsing in child processes."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import watchfiles

from kuma.resources import Mesh
from kuma.store import Operation, Store, WatchItem
from kuma_directory_store import bulk, watcher
from kuma_directory_store.files import parse, read_and_parse, rewrite

from .harness_directory import (
    dataplane,
    dataplane_yaml,
    expect_nothing_before_sentinel,
    open_directory,
    wait_until,
)
from .watching import read_events, read_snapshot

pytestmark = pytest.mark.anyio


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "resources"
    path.mkdir()
    return path


@pytest.fixture
async def store(folder: Path) -> AsyncIterator[Store]:
    async with open_directory(folder) as opened:
        yield opened


@pytest.fixture
async def events(store: Store) -> AsyncIterator[AsyncIterator[WatchItem]]:
    async with store.watch() as watch:
        await read_snapshot(watch)
        yield watch


def test_files_that_are_not_resources_are_problems_not_crashes(tmp_path: Path) -> None:
    assert (
        parse(b"\xff\xfe\x00garbage", "x.yaml").error
        == "not UTF-8 text: invalid start byte at byte 0"
    )
    assert parse(b"- just\n- a list\n", "x.yaml").error is not None
    assert parse(b"", "x.yaml").resources == ()  # an empty file is valid and holds nothing
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    parsed = read_and_parse(str(fifo), None)  # must not block waiting for a writer
    assert parsed is not None
    assert parsed.error == "cannot be read: not a regular file"
    (tmp_path / "folder.yaml").mkdir()
    assert read_and_parse(str(tmp_path / "folder.yaml"), None) is None


MTLS = {"enabledBackend": "ca", "backends": [{"name": "ca", "type": "builtin"}]}


def test_rewriting_falls_back_to_encoding_when_documents_cannot_be_cut() -> None:
    text = "%YAML 1.1\n---\n" + dataplane_yaml("web") + "--- " + "{type: Mesh, name: demo}\n"
    resources = parse(text.encode(), "x").resources
    assert resources == (dataplane("web"), Mesh(name="demo"))
    rewritten = rewrite(text, resources, 1, Mesh(name="demo", mtls=MTLS))
    assert parse(rewritten.encode(), "x").resources == (
        dataplane("web"),
        Mesh(name="demo", mtls=MTLS),
    )


async def test_a_folder_that_vanishes_and_comes_back(
    store: Store, folder: Path, events: AsyncIterator[WatchItem]
) -> None:
    (folder / "web.yaml").write_text(dataplane_yaml("web"))
    await read_events(events, 1)
    shutil.rmtree(folder)
    (deleted,) = await read_events(events, 1)
    assert deleted.operation is Operation.DELETE
    await wait_until(lambda: [p.where for p in store.problems()] == [str(folder)])

    staging = folder.with_name("staging")
    staging.mkdir()
    (staging / "api.yaml").write_text(dataplane_yaml("api"))
    os.rename(staging, folder)
    (created,) = await read_events(events, 1)
    assert (created.operation, created.resource) == (Operation.CREATE, dataplane("api"))
    await wait_until(lambda: store.problems() == ())
    (folder / "web.yaml").write_text(dataplane_yaml("web"))  # watched again
    (again,) = await read_events(events, 1)
    assert again.resource == dataplane("web")


async def test_a_fifo_named_like_a_resource_file_does_not_stop_the_store(
    store: Store, folder: Path, events: AsyncIterator[WatchItem]
) -> None:
    os.mkfifo(folder / "pipe.yaml")
    await wait_until(lambda: len(store.problems()) == 1)
    await expect_nothing_before_sentinel(folder, events)


async def test_a_folder_that_never_notifies_is_served_and_reported(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def deaf(
        *paths: object, stop_event: anyio.Event, **options: object
    ) -> AsyncIterator[set[tuple[watchfiles.Change, str]]]:
        await stop_event.wait()
        never: list[set[tuple[watchfiles.Change, str]]] = []
        for changes in never:  # an async generator that never reports a change
            yield changes

    monkeypatch.setattr(watchfiles, "awatch", deaf)
    monkeypatch.setattr(watcher, "_PROBE_WAIT", 0.05)
    (folder / "web.yaml").write_text(dataplane_yaml("web"))
    async with open_directory(folder) as store:
        assert (await store.list("Dataplane")).total == 1
        (problem,) = store.problems()
        assert problem.where == str(folder)
        assert "WATCHFILES_FORCE_POLLING" in problem.reason


@pytest.fixture
def child_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Parse in children from 4 files on, on 2 cores at least; record each child's share."""
    runs: list[int] = []
    real_run = subprocess.run

    def run(*args: Any, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        runs.append(kwargs["input"].count(b","))
        return real_run(*args, **kwargs)

    monkeypatch.setattr(bulk, "PARALLEL_MIN_FILES", 4)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(subprocess, "run", run)
    return runs


def make_files(folder: Path) -> list[str]:
    for i in range(6):
        (folder / f"dp-{i}.yaml").write_text(dataplane_yaml(f"dp-{i}", port=1000 + i))
    (folder / "bad.yaml").write_text(dataplane_yaml("bad", port=0))
    return [*sorted(str(p) for p in folder.iterdir()), str(folder / "gone.yaml")]


def test_children_parse_a_big_batch_like_this_process(
    folder: Path, child_runs: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    paths = make_files(folder)
    assert bulk.read_and_parse_new(paths) == bulk.parse_here(paths)
    assert len(child_runs) == 2, child_runs
    assert not caplog.records


def test_a_failing_child_falls_back_to_parsing_here(
    folder: Path,
    child_runs: list[int],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    paths = make_files(folder)
    monkeypatch.setattr(sys, "executable", str(folder / "no-such-python"))
    with caplog.at_level(logging.WARNING, logger="kuma.store.directory"):
        assert bulk.read_and_parse_new(paths) == bulk.parse_here(paths)
    assert len(child_runs) == 2
    assert all("parsing here" in r.getMessage() for r in caplog.records)
    assert len(caplog.records) == 2


async def test_start_up_of_a_big_folder_goes_through_children(
    folder: Path, child_runs: list[int]
) -> None:
    make_files(folder)
    async with open_directory(folder) as store:
        assert (await store.list("Dataplane")).total == 6
        assert [p.where for p in store.problems()] == [str(folder / "bad.yaml")]
    assert len(child_runs) == 2


async def _ignore_changes(files: set[str], dirs: set[str]) -> None:
    pass


@pytest.mark.parametrize(
    ("debounce_ms", "step_ms"),
    [(50, 10), (20, 10), (8, 4), (1, 1), (1000, 10)],
)
def test_a_lone_edit_waits_a_short_quiet_step_whatever_the_debounce(
    folder: Path, debounce_ms: int, step_ms: int
) -> None:
    # The quiet step is a lone edit's whole delay before the engine sees it (issue 16: a
    # policy change's 100 ms budget); the debounce stays the longest a burst is grouped.
    found = watcher.FolderWatcher(str(folder), debounce_ms, _ignore_changes, print, set())
    assert (found._step_ms, found._debounce_ms) == (step_ms, debounce_ms)

"""The directory store follows the folder: files dropped, edited, renamed, broken, moved."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from kuma.resources import Mesh, ResourceKey
from kuma.store import Operation, Problem, Store, WatchItem

from .harness_directory import (
    dataplane,
    dataplane_yaml,
    expect_nothing_before_sentinel,
    open_directory,
    wait_until,
)
from .watching import read_events, read_snapshot

pytestmark = pytest.mark.anyio

WEB = ResourceKey("Dataplane", "default", "web")


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


def problem_of(store: Store, path: Path) -> Problem | None:
    return next((p for p in store.problems() if p.where == str(path)), None)


async def test_dropping_editing_and_deleting_a_file(
    store: Store, folder: Path, events: AsyncIterator[WatchItem]
) -> None:
    path = folder / "web.yaml"
    path.write_text(dataplane_yaml("web"))
    (created,) = await read_events(events, 1)
    assert (created.operation, created.resource) == (Operation.CREATE, dataplane("web"))
    assert (await store.get(WEB)).meta == created.meta

    path.write_text(dataplane_yaml("web", port=9090))
    (updated,) = await read_events(events, 1)
    assert (updated.operation, updated.resource) == (Operation.UPDATE, dataplane("web", port=9090))
    assert updated.meta.version != created.meta.version
    assert updated.meta.creation_time == created.meta.creation_time
    assert updated.revision > created.revision

    path.unlink()
    (deleted,) = await read_events(events, 1)
    assert (deleted.operation, deleted.key) == (Operation.DELETE, WEB)
    assert (await store.list("Dataplane")).items == ()
    await expect_nothing_before_sentinel(folder, events)


async def test_files_present_at_start_are_the_first_snapshot(folder: Path) -> None:
    (folder / "web.yaml").write_text(dataplane_yaml("web"))
    (folder / "broken.yaml").write_text("type: Dataplane\nname: [\n")
    (folder / "notes.txt").write_text(dataplane_yaml("not-a-resource-file"))
    (folder / ".hidden.yaml").write_text(dataplane_yaml("hidden"))
    async with open_directory(folder) as store, store.watch() as events:
        snapshot, _ = await read_snapshot(events)
        assert [e.resource for e in snapshot] == [dataplane("web")]
        assert [p.where for p in store.problems()] == [str(folder / "broken.yaml")]


async def test_same_content_or_formatting_only_emits_nothing(
    store: Store, folder: Path, events: AsyncIterator[WatchItem]
) -> None:
    path = folder / "web.yaml"
    path.write_text(dataplane_yaml("web"))
    (created,) = await read_events(events, 1)
    path.write_text(dataplane_yaml("web"))  # touched, same bytes
    await expect_nothing_before_sentinel(folder, events)
    path.write_text("# the web proxy\n" + dataplane_yaml("web"))  # new bytes, same resource
    await expect_nothing_before_sentinel(folder, events)
    assert (await store.get(WEB)).meta.version == created.meta.version


async def test_a_partial_write_settles_on_the_whole_file(
    store: Store, folder: Path, events: AsyncIterator[WatchItem]
) -> None:
    path = folder / "web.yaml"
    text = dataplane_yaml("web")
    cut = text.index("kuma.io/service")  # the half ends inside the tag: an invalid Dataplane
    with path.open("w") as file:
        file.write(text[:cut])
        file.flush()
        # The half was seen (the file is in error, not served) before the rest is written.
        await wait_until(lambda: problem_of(store, path) is not None)
        assert (await store.list("Dataplane")).items == ()
        file.write(text[cut:])
    (created,) = await read_events(events, 1)
    assert (created.operation, created.resource) == (Operation.CREATE, dataplane("web"))
    assert store.problems() == ()


async def test_a_file_written_in_two_quick_parts_is_read_once_whole(
    store: Store, folder: Path, events: AsyncIterator[WatchItem]
) -> None:
    path = folder / "web.yaml"
    text = dataplane_yaml("web")
    with path.open("w") as file:
        file.write(text[: len(text) // 2])
        file.flush()
        file.write(text[len(text) // 2 :])
    (created,) = await read_events(events, 1)
    assert created.resource == dataplane("web")
    await expect_nothing_before_sentinel(folder, events)
    assert store.problems() == ()


async def test_write_then_rename_into_place(
    store: Store, folder: Path, events: AsyncIterator[WatchItem]
) -> None:
    temp = folder / "web.yaml.part"  # outside the watched suffixes, like an editor's temp file
    temp.write_text(dataplane_yaml("web"))
    await expect_nothing_before_sentinel(folder, events)
    os.rename(temp, folder / "web.yaml")
    (created,) = await read_events(events, 1)
    assert (created.operation, created.resource) == (Operation.CREATE, dataplane("web"))

    hidden = folder / ".web.yaml.swp"  # a dot-file: ignored until renamed over the real one
    hidden.write_text(dataplane_yaml("web", port=9090))
    os.replace(hidden, folder / "web.yaml")
    (updated,) = await read_events(events, 1)
    assert (updated.operation, updated.resource) == (Operation.UPDATE, dataplane("web", port=9090))
    await expect_nothing_before_sentinel(folder, events)


async def test_renaming_or_moving_a_file_changes_nothing(
    store: Store, folder: Path, events: AsyncIterator[WatchItem]
) -> None:
    (folder / "team-a").mkdir()
    (folder / "web.yaml").write_text(dataplane_yaml("web"))
    (created,) = await read_events(events, 1)
    os.rename(folder / "web.yaml", folder / "team-a" / "web-proxy.yaml")
    os.rename(folder / "team-a" / "web-proxy.yaml", folder / "a-first.yaml")
    await expect_nothing_before_sentinel(folder, events)
    assert (await store.get(WEB)).meta == created.meta
    assert store.problems() == ()
    (folder / "a-first.yaml").unlink()  # the new file owns it now
    (deleted,) = await read_events(events, 1)
    assert (deleted.operation, deleted.key) == (Operation.DELETE, WEB)


async def test_an_invalid_file_keeps_its_last_valid_version_until_fixed(
    store: Store,
    folder: Path,
    events: AsyncIterator[WatchItem],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="kuma.store.directory")
    path = folder / "web.yaml"
    path.write_text(dataplane_yaml("web"))
    (created,) = await read_events(events, 1)

    # A rule broken (port out of range): the field is named.
    path.write_text(dataplane_yaml("web", port=70000))
    await wait_until(lambda: problem_of(store, path) is not None)
    problem = problem_of(store, path)
    assert problem is not None
    assert "networking.inbound[0].port" in problem.reason, problem
    assert "line 7" in problem.reason, problem  # the line of the offending field
    assert (await store.get(WEB)).meta.version == created.meta.version
    assert any(str(path) in r.getMessage() and "port" in r.getMessage() for r in caplog.records)

    # A YAML syntax error: the line is named.
    path.write_text(dataplane_yaml("web") + "  outbound: [\n")
    await wait_until(lambda: "invalid YAML" in getattr(problem_of(store, path), "reason", ""))
    problem = problem_of(store, path)
    assert problem is not None
    assert "invalid YAML" in problem.reason, problem
    assert (await store.get(WEB)).resource == dataplane("web")

    # An unknown key: shape error, line and field named.
    path.write_text(dataplane_yaml("web").replace("servicePort", "servicePrt"))
    await wait_until(lambda: "servicePrt" in getattr(problem_of(store, path), "reason", ""))
    problem = problem_of(store, path)
    assert problem is not None
    assert "line 8" in problem.reason, problem

    path.write_text(dataplane_yaml("web", port=9090))
    (fixed,) = await read_events(events, 1)
    assert (fixed.operation, fixed.resource) == (Operation.UPDATE, dataplane("web", port=9090))
    assert store.problems() == ()


async def test_a_broken_file_that_is_deleted_takes_its_problem_and_resources_away(
    store: Store, folder: Path, events: AsyncIterator[WatchItem]
) -> None:
    path = folder / "web.yaml"
    path.write_text(dataplane_yaml("web"))
    await read_events(events, 1)
    path.write_text("not: [valid\n")
    await wait_until(lambda: problem_of(store, path) is not None)
    path.unlink()
    (deleted,) = await read_events(events, 1)
    assert (deleted.operation, deleted.key) == (Operation.DELETE, WEB)
    assert store.problems() == ()


async def test_a_file_with_several_documents(
    store: Store, folder: Path, events: AsyncIterator[WatchItem]
) -> None:
    path = folder / "all.yaml"
    docs = ["type: Mesh\nname: demo\n", dataplane_yaml("web"), dataplane_yaml("api", port=7070)]
    path.write_text("---\n".join(docs))
    created = await read_events(events, 3)
    assert [e.resource for e in created] == [
        Mesh(name="demo"),
        dataplane("web"),
        dataplane("api", port=7070),
    ]
    # One document changed, one removed, one untouched: exactly two events.
    path.write_text("---\n".join([docs[0], dataplane_yaml("web", port=9090)]))
    changes = await read_events(events, 2)
    assert {(e.operation, e.key.name) for e in changes} == {
        (Operation.DELETE, "api"),
        (Operation.UPDATE, "web"),
    }
    await expect_nothing_before_sentinel(folder, events)

    # One bad document makes the whole file wait: nothing of it changes.
    path.write_text("---\n".join([docs[0], dataplane_yaml("web", port=1), "type: Nope\n"]))
    await wait_until(lambda: problem_of(store, path) is not None)
    problem = problem_of(store, path)
    assert problem is not None
    assert "document 3" in problem.reason, problem
    assert (await store.get(WEB)).resource == dataplane("web", port=9090)


async def test_the_same_resource_in_two_files_is_an_error_naming_both(
    store: Store, folder: Path, events: AsyncIterator[WatchItem]
) -> None:
    first, second = folder / "a.yaml", folder / "b.yaml"
    first.write_text(dataplane_yaml("web"))
    (created,) = await read_events(events, 1)
    second.write_text("type: Mesh\nname: demo\n---\n" + dataplane_yaml("web", port=9090))
    await wait_until(lambda: problem_of(store, second) is not None)
    problem = problem_of(store, second)
    assert problem is not None
    assert str(first) in problem.reason, problem
    assert "Dataplane default/web" in problem.reason, problem
    assert problem_of(store, first) is None
    assert (await store.get(WEB)).meta == created.meta
    await expect_nothing_before_sentinel(folder, events)  # nothing of b.yaml was taken

    # Once the first file lets go, the second one takes over without being touched, and
    # without a moment when the resource is gone.
    first.unlink()
    changes = await read_events(events, 2)
    assert [(e.operation, e.resource) for e in changes] == [
        (Operation.CREATE, Mesh(name="demo")),
        (Operation.UPDATE, dataplane("web", port=9090)),
    ]
    assert changes[1].meta.creation_time == created.meta.creation_time
    assert store.problems() == ()
    await expect_nothing_before_sentinel(folder, events)


async def test_duplicates_at_start_up_go_to_the_first_file_in_path_order(folder: Path) -> None:
    (folder / "b.yaml").write_text(dataplane_yaml("web", port=9090))
    (folder / "a.yaml").write_text(dataplane_yaml("web"))
    async with open_directory(folder) as store:
        assert (await store.get(WEB)).resource == dataplane("web")
        problem = problem_of(store, folder / "b.yaml")
        assert problem is not None
        assert str(folder / "a.yaml") in problem.reason


async def test_a_thousand_files_dropped_at_once(
    store: Store, folder: Path, events: AsyncIterator[WatchItem]
) -> None:
    count = 1000

    def drop() -> None:
        for i in range(count):
            (folder / f"dp-{i:04d}.yaml").write_text(dataplane_yaml(f"dp-{i}", port=1000 + i))

    await anyio.to_thread.run_sync(drop)
    got = await read_events(events, count, within=30)
    assert {e.operation for e in got} == {Operation.CREATE}
    assert sorted(e.key.name for e in got) == sorted(f"dp-{i}" for i in range(count))
    await expect_nothing_before_sentinel(folder, events)
    assert (await store.list("Dataplane")).total == count


async def test_subdirectories_are_watched_and_moved_folders_followed(
    store: Store, folder: Path, tmp_path: Path, events: AsyncIterator[WatchItem]
) -> None:
    deep = folder / "team-a" / "deep"
    deep.mkdir(parents=True)  # a file written right after its folder: the folder is rescanned
    (deep / "web.yaml").write_text(dataplane_yaml("web"))
    (created,) = await read_events(events, 1)
    assert created.resource == dataplane("web")

    outside = tmp_path / "elsewhere"
    os.rename(folder / "team-a", outside)  # moved out: one notice for the folder only
    (deleted,) = await read_events(events, 1)
    assert (deleted.operation, deleted.key) == (Operation.DELETE, WEB)

    (outside / "deep" / "api.yaml").write_text(dataplane_yaml("api"))
    os.rename(outside, folder / "team-b")  # moved in with two files
    back = await read_events(events, 2)
    assert {(e.operation, e.key.name) for e in back} == {
        (Operation.CREATE, "web"),
        (Operation.CREATE, "api"),
    }
    await expect_nothing_before_sentinel(folder, events)


async def test_json_files(store: Store, folder: Path, events: AsyncIterator[WatchItem]) -> None:
    (folder / "meshes.json").write_text(
        '[{"type": "Mesh", "name": "a"}, {"type": "Mesh", "name": "b"}]'
    )
    got = await read_events(events, 2)
    assert [e.resource for e in got] == [Mesh(name="a"), Mesh(name="b")]
    (folder / "bad.json").write_text(
        '[{"type": "Mesh", "name": "c"},\n {"type": "Mesh" "name": 3}]'
    )
    await wait_until(lambda: problem_of(store, folder / "bad.json") is not None)
    problem = problem_of(store, folder / "bad.json")
    assert problem is not None
    assert "line 2: invalid JSON" in problem.reason, problem
    assert (await store.list("Mesh")).total == 2

"""Issue 17, defect 6: one file must not freeze the store. Lines of violations are found in
one pass, violations per resource are bounded, a file's size is bounded, and parsing happens
outside the store's write path."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import anyio
import pytest
import yaml

from kuma.resources import Mesh, ResourceKey
from kuma.store import StoreConfigError
from kuma_directory_store import files
from kuma_directory_store.files import MAX_VIOLATIONS_SHOWN, parse

from .harness_directory import dataplane, dataplane_yaml, get_eventually, open_directory, wait_until

pytestmark = pytest.mark.anyio


def bad_inbounds(count: int) -> bytes:
    lines = ["type: Dataplane", "mesh: default", "name: web", "networking:", "  address: 10.0.0.1"]
    lines.append("  inbound:")
    for _ in range(count):
        lines += ["  - port: 0", "    tags:", "      kuma.io/service: web"]
    return "\n".join(lines).encode()


def test_violations_are_located_in_one_parse_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    composed = 0
    real = yaml.compose_all

    def counting(*args: object, **kwargs: object) -> object:
        nonlocal composed
        composed += 1
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(yaml, "compose_all", counting)
    parsed = parse(bad_inbounds(1000), "web.yaml")
    assert composed == 1  # was one parse per violation: quadratic in the file
    assert parsed.error is not None
    assert parsed.error.count("port must be in the range") == MAX_VIOLATIONS_SHOWN
    assert parsed.error.endswith(f"... and {1000 - MAX_VIOLATIONS_SHOWN} more")
    assert "line 7: networking.inbound[0].port" in parsed.error
    assert len(parsed.error) < 5000


async def test_a_file_over_the_size_bound_is_reported_not_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kuma.store.directory")
    folder = tmp_path / "resources"
    folder.mkdir()
    (folder / "big.yaml").write_bytes(bad_inbounds(200))  # ~8 KB
    (folder / "mid.yaml").write_text(dataplane_yaml("mid") + "# " + "x" * 3000 + "\n")
    async with open_directory(folder, maxFileBytes=4096) as store:
        problems = {p.where: p.reason for p in store.problems()}
        reason = problems[str(folder / "big.yaml")]
        assert "more than store.directory.maxFileBytes (4096)" in reason
        assert "port must be" not in reason  # not parsed at all
        assert (await store.list("Dataplane")).total == 1


async def test_writes_go_on_while_a_file_is_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parsing a file (however slow) never holds the store's write path."""
    folder = tmp_path / "resources"
    folder.mkdir()
    parsing = threading.Event()
    release = threading.Event()
    real = files.parse

    def slow(data: bytes, source: str) -> files.Parsed:
        if source.endswith("slow.yaml"):
            parsing.set()
            release.wait(30)
        return real(data, source)

    monkeypatch.setattr(files, "parse", slow)
    async with open_directory(folder) as store:
        try:
            (folder / "slow.yaml").write_text(dataplane_yaml("slow"))
            await wait_until(parsing.is_set)
            with anyio.fail_after(5):  # held for the whole parse before
                await store.create(Mesh(name="other"))
                await store.create(dataplane("fast", mesh="other"))
            assert (await store.list("Dataplane")).total == 1
        finally:
            release.set()
        await get_eventually(store, ResourceKey("Dataplane", "default", "slow"))


async def test_an_unknown_store_option_names_the_new_key(tmp_path: Path) -> None:
    with pytest.raises(StoreConfigError, match="maxFileBytes: must be"):
        async with open_directory(tmp_path, maxFileBytes="lots"):
            pass


async def test_links_that_leave_the_folder_are_not_read(tmp_path: Path) -> None:
    """Issue 17, defect 9: a link to a file outside the folder (/etc/passwd, or a valid
    Dataplane kept elsewhere) is reported, not read; a link within the folder works."""
    folder = tmp_path / "resources"
    folder.mkdir()
    outside = tmp_path / "elsewhere.yaml"
    outside.write_text(dataplane_yaml("outside"))
    (folder / "sub").mkdir()
    (folder / "sub" / "inside.yaml").write_text(dataplane_yaml("inside", port=8081))
    (folder / "evil.yaml").symlink_to(outside)
    (folder / "alias.yml").symlink_to(folder / "sub" / "inside.yaml")
    async with open_directory(folder) as store:
        problems = {p.where: p.reason for p in store.problems()}
        assert "outside the store's folder" in problems[str(folder / "evil.yaml")]
        names = {item.key.name for item in (await store.list("Dataplane")).items}
        assert names == {"inside"}
        (folder / "later.yaml").symlink_to(outside)
        await wait_until(lambda: str(folder / "later.yaml") in {p.where for p in store.problems()})


async def test_creation_times_survive_a_restart(tmp_path: Path) -> None:
    """Issue 17, defect 9: the directory store used to stamp every resource with the time it
    was read, so each restart made every resource look new."""
    folder = tmp_path / "resources"
    folder.mkdir()
    path = folder / "web.yaml"
    path.write_text(dataplane_yaml("web"))
    os.utime(path, (1_700_000_000, 1_700_000_000))
    key = ResourceKey("Dataplane", "default", "web")
    times = []
    for _ in range(2):
        async with open_directory(folder) as store:
            meta = (await store.get(key)).meta
            times.append((meta.creation_time, meta.modification_time))
    assert times[0] == times[1]
    assert times[0][0].timestamp() == 1_700_000_000


def test_a_duplicate_inside_one_file_is_named() -> None:
    """Issue 17, defect 9: the report names the resource defined twice and both documents."""
    text = "type: Mesh\nname: a\n---\ntype: Mesh\nname: b\n---\ntype: Mesh\nname: a\n"
    parsed = parse(text.encode(), "meshes.yaml")
    assert parsed.error == (
        "document 3, Mesh a is defined twice in this file (first in document 1); remove one of them"
    )

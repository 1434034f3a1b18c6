"""Writes through the directory store land as files; the folder stays the source of truth."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from kuma.resources import (
    GlobalSecret,
    Mesh,
    ResourceKey,
    Secret,
    ZoneIngress,
    decode,
    decode_one,
)
from kuma.resources.model import AvailableService, ZoneIngressNetworking
from kuma.store import ConflictError, Operation, Store, StoreConfigError, WatchItem, open_store

from .harness_directory import (
    dataplane,
    dataplane_yaml,
    expect_nothing_before_sentinel,
    get_eventually,
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


def resource_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


async def test_create_update_delete_land_as_files_with_one_event_each(
    store: Store, folder: Path, events: AsyncIterator[WatchItem]
) -> None:
    created = await store.create(dataplane("web"))
    await store.create(Mesh(name="demo"))
    assert resource_files(folder) == ["dataplane-default-web.yaml", "mesh-demo.yaml"]
    path = folder / "dataplane-default-web.yaml"
    assert decode(path.read_bytes()) == [dataplane("web")]

    updated = await store.update(dataplane("web", port=9090), version=created.meta.version)
    assert decode(path.read_bytes()) == [dataplane("web", port=9090)]
    await store.delete(WEB, version=updated.meta.version)
    assert resource_files(folder) == ["mesh-demo.yaml"]

    got = await read_events(events, 4)
    assert [(e.operation, e.key.name) for e in got] == [
        (Operation.CREATE, "web"),
        (Operation.CREATE, "demo"),
        (Operation.UPDATE, "web"),
        (Operation.DELETE, "web"),
    ]
    # The watcher's notices of those writes find the content already applied.
    await expect_nothing_before_sentinel(folder, events)


async def test_written_files_are_read_back_after_a_restart(folder: Path) -> None:
    async with open_directory(folder) as store:
        await store.create(dataplane("web", port=7070))
        await store.create(Mesh(name="demo"))
    async with open_directory(folder) as store:
        assert (await store.get(WEB)).resource == dataplane("web", port=7070)
        assert (await store.get(ResourceKey("Mesh", "", "demo"))).resource == Mesh(name="demo")
        assert store.problems() == ()


async def test_a_new_resource_never_overwrites_an_unrelated_file(
    store: Store, folder: Path
) -> None:
    squatter = folder / "dataplane-default-web.yaml"
    squatter.write_text(dataplane_yaml("other"))  # whether the watcher has read it yet or not
    await store.create(dataplane("web"))
    assert decode(squatter.read_bytes()) == [dataplane("other")]
    assert decode((folder / "dataplane-default-web-2.yaml").read_bytes()) == [dataplane("web")]


MULTI = f"""# Proxies of the web team: keep this comment.
{dataplane_yaml("web")}---
# the api proxy
{dataplane_yaml("api", port=7070)}---
type: Mesh
name: demo  # an inline comment
"""


async def test_updating_one_document_keeps_the_others_as_written(
    store: Store, folder: Path, events: AsyncIterator[WatchItem]
) -> None:
    path = folder / "team.yaml"
    path.write_text(MULTI)
    await read_events(events, 3)
    api = ResourceKey("Dataplane", "default", "api")
    current = await store.get(api)
    await store.update(dataplane("api", port=7171), version=current.meta.version)
    text = path.read_text()
    assert text.startswith(
        "# Proxies of the web team: keep this comment.\n" + dataplane_yaml("web")
    )
    assert "# the api proxy\n" in text
    assert "name: demo  # an inline comment\n" in text
    assert decode(text) == [dataplane("web"), dataplane("api", port=7171), Mesh(name="demo")]

    await store.delete(WEB)
    text = path.read_text()
    assert decode(text) == [dataplane("api", port=7171), Mesh(name="demo")]
    assert "name: demo  # an inline comment\n" in text
    await store.delete(api)
    await store.delete(ResourceKey("Mesh", "", "demo"))
    assert resource_files(folder) == []

    got = await read_events(events, 4)
    assert [(e.operation, e.key.name) for e in got] == [
        (Operation.UPDATE, "api"),
        (Operation.DELETE, "web"),
        (Operation.DELETE, "api"),
        (Operation.DELETE, "demo"),
    ]
    await expect_nothing_before_sentinel(folder, events)


MTLS = {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}


async def test_a_json_file_stays_json(store: Store, folder: Path) -> None:
    path = folder / "meshes.json"
    path.write_text(json.dumps([{"type": "Mesh", "name": "a"}, {"type": "Mesh", "name": "b"}]))
    b = await get_eventually(store, ResourceKey("Mesh", "", "b"))
    await store.update(Mesh(name="b", mtls=MTLS), version=b.meta.version)
    assert json.loads(path.read_text()) == [
        {"type": "Mesh", "name": "a"},
        {"type": "Mesh", "name": "b", "mtls": MTLS},
    ]
    await store.delete(ResourceKey("Mesh", "", "a"))
    assert json.loads(path.read_text()) == {
        "type": "Mesh",
        "name": "b",
        "mtls": MTLS,
    }


async def test_a_zone_ingress_the_store_creates_is_json_and_a_yaml_one_stays_yaml(
    store: Store, folder: Path
) -> None:
    """A ZoneIngress's list is rewritten on every change of its zone (files.JSON_KINDS says
    why JSON); an operator's YAML file keeps its format."""
    listing = (AvailableService(tags={"kuma.io/service": "web"}, instances=2, mesh="default"),)
    net = ZoneIngressNetworking(address="10.0.0.1", port=10001)
    created = await store.create(ZoneIngress(name="ingress-1", zone="zone-1", networking=net))
    path = folder / "zoneingress-ingress-1.json"
    assert resource_files(folder) == [path.name]
    assert json.loads(path.read_text())["zone"] == "zone-1"
    updated = ZoneIngress(
        name="ingress-1", zone="zone-1", networking=net, available_services=listing
    )
    await store.update(updated, version=created.meta.version)
    assert json.loads(path.read_text())["availableServices"][0]["instances"] == 2
    assert decode(path.read_bytes()) == [updated]

    operators = folder / "ingress-2.yaml"
    operators.write_text(
        "type: ZoneIngress\nname: ingress-2\nnetworking:\n  address: 10.0.0.2\n  port: 10001\n"
    )
    held = await get_eventually(store, ResourceKey("ZoneIngress", "", "ingress-2"))
    await store.update(
        msgspec.structs.replace(held.resource, available_services=listing),
        version=held.meta.version,
    )
    assert operators.read_text().startswith("type: ZoneIngress\nname: ingress-2\n")
    assert decode(operators.read_bytes()) == [
        msgspec.structs.replace(held.resource, available_services=listing)
    ]


async def test_an_edit_not_yet_seen_by_the_watcher_wins_over_a_stale_write(
    store: Store, folder: Path
) -> None:
    created = await store.create(dataplane("web"))
    path = folder / "dataplane-default-web.yaml"
    # Edited by hand; the store's update comes before the watcher's debounce ends.
    path.write_text(dataplane_yaml("web", port=6060))
    with pytest.raises(ConflictError, match="stale"):
        await store.update(dataplane("web", port=9090), version=created.meta.version)
    assert (await store.get(WEB)).resource == dataplane("web", port=6060)
    assert decode(path.read_bytes()) == [dataplane("web", port=6060)]


async def test_a_file_in_error_refuses_writes_to_its_resources(store: Store, folder: Path) -> None:
    path = folder / "web.yaml"
    path.write_text(dataplane_yaml("web"))
    current = (await get_eventually(store, WEB)).meta.version
    path.write_text("type: Dataplane\nname: [\n")
    await wait_until(lambda: len(store.problems()) == 1)
    with pytest.raises(ConflictError, match=str(path)):
        await store.update(dataplane("web", port=9090), version=current)
    with pytest.raises(ConflictError, match="must be fixed first"):
        await store.delete(WEB)
    assert path.read_text() == "type: Dataplane\nname: [\n"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "store.directory.path: required"),
        ({"path": ""}, "store.directory.path: required"),
        ({"path": "{file}"}, "store.directory.path: .* is not a directory"),
        ({"path": "{file}/sub"}, "store.directory.path: cannot create"),
        ({"path": "{folder}", "debounceMs": 0}, "store.directory.debounceMs"),
        ({"path": "{folder}", "debounceMs": True}, "store.directory.debounceMs"),
        (
            {"path": "{folder}", "color": 1, "size": 2},
            "store.directory.color, store.directory.size",
        ),
    ],
)
async def test_bad_options_are_named(
    tmp_path: Path, options: dict[str, object], message: str
) -> None:
    file = tmp_path / "a-file"
    file.write_text("")
    filled = {
        k: v.format(file=file, folder=tmp_path / "f") if isinstance(v, str) else v
        for k, v in options.items()
    }
    with pytest.raises(StoreConfigError, match=message):
        async with open_store("directory", filled):
            pass


async def test_a_missing_folder_is_created(tmp_path: Path) -> None:
    folder = tmp_path / "not" / "yet"
    async with open_directory(folder) as store:
        await store.create(Mesh(name="demo"))
    assert resource_files(folder) == ["mesh-demo.yaml"]


async def test_secret_files_are_written_0600_and_loose_ones_are_reported(
    store: Store, folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Kuma's universal secrets on disk: the store writes them owner-only from the first byte;
    a secret file a person dropped in readable by others is served, with a warning that names
    the file and the fix, and never the value."""
    await store.create(Secret(mesh="default", name="key-1", data="dG9wLXNlY3JldA=="))
    await store.create(GlobalSecret(name="tls", data="dG9wLXNlY3JldA=="))
    for name in ("secret-default-key-1.yaml", "globalsecret-tls.yaml"):
        assert (folder / name).stat().st_mode & 0o777 == 0o600, name
    created = await store.get(ResourceKey("Secret", "default", "key-1"))
    await store.update(
        Secret(mesh="default", name="key-1", data="bmV3"), version=created.meta.version
    )
    assert (folder / "secret-default-key-1.yaml").stat().st_mode & 0o777 == 0o600

    loose = folder / "dropped.yaml"
    loose.write_text("type: GlobalSecret\nname: dropped\ndata: bG9vc2UtdmFsdWU=\n")
    loose.chmod(0o644)
    await get_eventually(store, ResourceKey("GlobalSecret", "", "dropped"))
    await wait_until(lambda: "lets others read it" in caplog.text)
    assert f"{loose} holds secrets but its mode 0644 lets others read it" in caplog.text
    assert f"chmod 600 {loose}" in caplog.text
    assert "bG9vc2UtdmFsdWU" not in caplog.text
    assert "dG9wLXNlY3JldA" not in caplog.text


async def test_an_external_service_with_an_inline_key_is_written_0600(
    store: Store, folder: Path
) -> None:
    """An inline client key is a private key on disk like a Secret's; a Secret's name is not."""
    document = (
        "type: ExternalService\nmesh: default\nname: {name}\nnetworking:\n"
        "  address: httpbin.org:443\n  tls: {{enabled: true, clientCert: {{secret: c}}, "
        "clientKey: {key}}}\ntags: {{kuma.io/service: {name}}}\n"
    )
    await store.create(decode_one(document.format(name="inline", key="{inlineString: KEY}")))
    await store.create(decode_one(document.format(name="named", key="{secret: k}")))
    mode = (folder / "externalservice-default-inline.yaml").stat().st_mode & 0o777
    assert mode == 0o600
    assert (folder / "externalservice-default-named.yaml").exists()

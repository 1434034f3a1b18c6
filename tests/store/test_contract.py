"""One contract, every store: the same behaviour for memory, directory and etcd."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from kuma.resources import (
    Dataplane,
    ExternalService,
    GlobalSecret,
    Mesh,
    MeshGateway,
    MeshVips,
    ResourceKey,
    Secret,
    ValidationError,
    decode_one,
)
from kuma.store import (
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    Operation,
    ResourceEvent,
    Store,
)

from .watching import assert_quiet, read_events, read_snapshot

pytestmark = pytest.mark.anyio


def dataplane(
    name: str, mesh: str = "default", port: int = 8080, service: str = "web"
) -> Dataplane:
    resource = decode_one(
        f"""
type: Dataplane
mesh: {mesh}
name: {name}
networking:
  address: 10.0.0.1
  inbound:
  - port: {port}
    servicePort: 80
    tags:
      kuma.io/service: {service}
"""
    )
    assert isinstance(resource, Dataplane)
    return resource


def mesh(name: str) -> Mesh:
    return Mesh(name=name)


async def test_create_then_get(store: Store) -> None:
    created = await store.create(dataplane("web-1"))
    got = await store.get(ResourceKey("Dataplane", "default", "web-1"))
    assert got.resource == dataplane("web-1")
    assert got.meta.version == created.meta.version
    assert got.meta.version
    assert got.meta.creation_time == got.meta.modification_time


async def test_global_resource_has_no_mesh(store: Store) -> None:
    await store.create(mesh("demo"))
    got = await store.get(ResourceKey("Mesh", "", "demo"))
    assert got.resource == mesh("demo")
    assert got.key == ResourceKey("Mesh", "", "demo")


async def test_create_existing_is_a_conflict(store: Store) -> None:
    await store.create(dataplane("web-1"))
    with pytest.raises(AlreadyExistsError):
        await store.create(dataplane("web-1", port=9090))
    assert (await store.get(ResourceKey("Dataplane", "default", "web-1"))).resource == dataplane(
        "web-1"
    )


async def test_update_with_current_version(store: Store) -> None:
    created = await store.create(dataplane("web-1"))
    updated = await store.update(dataplane("web-1", port=9090), version=created.meta.version)
    assert updated.meta.version != created.meta.version
    assert updated.meta.creation_time == created.meta.creation_time
    assert updated.meta.modification_time >= created.meta.modification_time
    got = await store.get(updated.key)
    assert got.resource == dataplane("web-1", port=9090)
    assert got.meta.version == updated.meta.version


async def test_update_with_stale_version_is_a_conflict(store: Store) -> None:
    created = await store.create(dataplane("web-1"))
    await store.update(dataplane("web-1", port=9090), version=created.meta.version)
    with pytest.raises(ConflictError):
        await store.update(dataplane("web-1", port=7070), version=created.meta.version)
    got = await store.get(created.key)
    assert got.resource == dataplane("web-1", port=9090)


async def test_update_missing_is_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError):
        await store.update(dataplane("ghost"), version="1")


async def test_delete(store: Store) -> None:
    created = await store.create(dataplane("web-1"))
    await store.delete(created.key)
    with pytest.raises(NotFoundError):
        await store.get(created.key)
    with pytest.raises(NotFoundError):
        await store.delete(created.key)


async def test_delete_with_stale_version_is_a_conflict(store: Store) -> None:
    created = await store.create(dataplane("web-1"))
    updated = await store.update(dataplane("web-1", port=9090), version=created.meta.version)
    with pytest.raises(ConflictError):
        await store.delete(created.key, version=created.meta.version)
    await store.delete(created.key, version=updated.meta.version)
    with pytest.raises(NotFoundError):
        await store.get(created.key)


async def test_invalid_resource_is_refused_and_nothing_is_stored(store: Store) -> None:
    bad = Dataplane(name="Bad_Name", mesh="default")
    with pytest.raises(ValidationError) as info:
        await store.create(bad)
    assert {v.field for v in info.value.violations} >= {"name", "networking"}
    page = await store.list("Dataplane")
    assert page.items == ()
    good = await store.create(dataplane("web-1"))
    with pytest.raises(ValidationError):
        await store.update(Dataplane(name="web-1", mesh="default"), version=good.meta.version)
    assert (await store.get(good.key)).resource == dataplane("web-1")


async def test_list_filters_by_type_and_mesh(store: Store) -> None:
    for m in ("default", "other"):
        for i in range(3):
            await store.create(dataplane(f"dp-{i}", mesh=m))
    await store.create(mesh("other"))
    everything = await store.list("Dataplane")
    assert everything.total == 6
    assert {(s.key.mesh, s.key.name) for s in everything.items} == {
        (m, f"dp-{i}") for m in ("default", "other") for i in range(3)
    }
    in_other = await store.list("Dataplane", "other")
    assert in_other.total == 3
    assert {s.key.mesh for s in in_other.items} == {"other"}
    meshes = await store.list("Mesh")
    assert [s.key.name for s in meshes.items] == ["other"]
    assert (await store.list("ZoneIngress")).items == ()


@pytest.mark.parametrize("mesh_filter", [None, "default"])
async def test_pagination_is_complete_and_stable(store: Store, mesh_filter: str | None) -> None:
    names = [f"dp-{i:02d}" for i in range(23)]
    for name in names:
        await store.create(dataplane(name))
    await store.create(dataplane("elsewhere", mesh="zzz"))
    expected_total = 23 if mesh_filter else 24
    full = await store.list("Dataplane", mesh_filter)
    assert full.total == expected_total
    seen: list[tuple[str, str]] = []
    offset: str | None = None
    pages = 0
    while True:
        page = await store.list("Dataplane", mesh_filter, limit=5, offset=offset)
        assert page.total == expected_total
        assert len(page.items) <= 5
        seen.extend((s.key.mesh, s.key.name) for s in page.items)
        pages += 1
        offset = page.next_offset
        if offset is None:
            break
    assert pages == -(-expected_total // 5)
    assert seen == [(s.key.mesh, s.key.name) for s in full.items]  # same stable order
    assert len(set(seen)) == expected_total


async def test_invalid_offset_is_an_error(store: Store) -> None:
    await store.create(dataplane("web-1"))
    with pytest.raises(ValueError, match="offset"):
        await store.list("Dataplane", limit=1, offset="not-an-offset!!")


async def test_watch_starts_with_a_snapshot(store: Store) -> None:
    await store.create(mesh("demo"))
    await store.create(dataplane("web-1"))
    async with store.watch() as events:
        snapshot, synced = await read_snapshot(events)
        assert {e.key for e in snapshot} == {
            ResourceKey("Mesh", "", "demo"),
            ResourceKey("Dataplane", "default", "web-1"),
        }
        assert all(e.operation is Operation.CREATE for e in snapshot)
        assert all(e.revision <= synced.revision for e in snapshot)
        await assert_quiet(events)


async def test_watch_delivers_every_change_in_order(store: Store) -> None:
    async with store.watch() as events:
        _, synced = await read_snapshot(events)
        created = await store.create(dataplane("web-1"))
        updated = await store.update(dataplane("web-1", port=9090), version=created.meta.version)
        await store.delete(updated.key)
        got = await read_events(events, 3)
        assert [e.operation for e in got] == [Operation.CREATE, Operation.UPDATE, Operation.DELETE]
        assert got[0].resource == dataplane("web-1")
        assert got[1].resource == dataplane("web-1", port=9090)
        assert got[1].meta.version == updated.meta.version
        assert got[2].key == updated.key
        revisions = [synced.revision] + [e.revision for e in got]
        assert revisions == sorted(set(revisions)), revisions
        await assert_quiet(events)


async def test_watch_does_not_lose_a_burst(store: Store) -> None:
    count = 120
    async with store.watch() as events:
        await read_snapshot(events)
        versions = {}
        for i in range(count):
            stored = await store.create(dataplane(f"dp-{i}", port=1000 + i))
            versions[stored.key] = stored.meta.version
        for i in range(0, count, 2):
            key = ResourceKey("Dataplane", "default", f"dp-{i}")
            await store.update(dataplane(f"dp-{i}", port=2000 + i), version=versions[key])
        got = await read_events(events, count + count // 2, within=30)
        creates = [e for e in got if e.operation is Operation.CREATE]
        updates = [e for e in got if e.operation is Operation.UPDATE]
        assert [e.key.name for e in creates] == [f"dp-{i}" for i in range(count)]
        assert [e.key.name for e in updates] == [f"dp-{i}" for i in range(0, count, 2)]
        revisions = [e.revision for e in got]
        assert revisions == sorted(set(revisions))
        await assert_quiet(events)


async def test_two_watchers_see_the_same_history(store: Store) -> None:
    async with store.watch() as first, store.watch() as second:
        await read_snapshot(first)
        await read_snapshot(second)
        created = await store.create(dataplane("web-1"))
        await store.update(dataplane("web-1", port=9090), version=created.meta.version)
        a = await read_events(first, 2)
        b = await read_events(second, 2)
        assert [(e.operation, e.resource, e.revision) for e in a] == [
            (e.operation, e.resource, e.revision) for e in b
        ]


async def test_a_reopened_watch_gets_the_current_state(store: Store) -> None:
    async with store.watch() as events:
        await read_snapshot(events)
        await store.create(dataplane("web-1"))
        await read_events(events, 1)
    created = await store.create(dataplane("web-2"))
    await store.delete(ResourceKey("Dataplane", "default", "web-1"))
    async with store.watch() as events:
        snapshot, _ = await read_snapshot(events)
        assert [(e.key, e.meta.version) for e in snapshot] == [(created.key, created.meta.version)]


async def test_concurrent_writers_never_lose_an_update(store: Store) -> None:
    """Read-modify-write with optimistic concurrency: every increment lands exactly once."""
    await store.create(dataplane("counter", port=1000))
    key = ResourceKey("Dataplane", "default", "counter")
    writers, increments = 4, 5
    conflicts = 0

    async def writer() -> None:
        nonlocal conflicts
        for _ in range(increments):
            while True:
                current = await store.get(key)
                resource = current.resource
                assert isinstance(resource, Dataplane)
                assert resource.networking is not None
                port = resource.networking.inbound[0].port
                # Let the other writers interleave between the read and the write.
                await anyio.lowlevel.checkpoint()
                try:
                    await store.update(
                        dataplane("counter", port=port + 1), version=current.meta.version
                    )
                    break
                except ConflictError:
                    conflicts += 1
                    await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        for _ in range(writers):
            tg.start_soon(writer)
    final = (await store.get(key)).resource
    assert isinstance(final, Dataplane)
    assert final.networking is not None
    assert final.networking.inbound[0].port == 1000 + writers * increments
    assert conflicts > 0, "the writers never raced: the test proved nothing"


async def test_events_carry_the_stored_meta(store: Store) -> None:
    async with store.watch() as events:
        await read_snapshot(events)
        created = await store.create(dataplane("web-1"))
        (event,) = await read_events(events, 1)
        assert isinstance(event, ResourceEvent)
        assert event.meta.version == created.meta.version
        assert event.meta.creation_time == created.meta.creation_time


async def test_every_resource_type_round_trips(store: Store) -> None:
    """The VIP allocation (a global type beside Mesh) is stored, listed, watched, updated and
    deleted like any other; a global name equal to a mesh's clashes with nothing."""
    await store.create(mesh("default"))
    async with store.watch() as events:
        await read_snapshot(events)
        vips = MeshVips(name="default", vips={"web": "240.0.0.1"})
        created = await store.create(vips)
        assert created.key == ResourceKey("MeshVips", "", "default")
        assert (await store.get(created.key)).resource == vips
        assert [i.resource for i in (await store.list("MeshVips")).items] == [vips]
        assert [i.resource for i in (await store.list("Mesh")).items] == [mesh("default")]
        more = MeshVips(name="default", vips={"web": "240.0.0.1", "api": "240.0.0.2"})
        updated = await store.update(more, version=created.meta.version)
        with pytest.raises(ValidationError):
            await store.update(
                MeshVips(name="default", vips={"web": "10.0.0.1"}), version=updated.meta.version
            )
        await store.delete(created.key, version=updated.meta.version)
        got = await read_events(events, 3)
        assert [(e.operation, e.resource) for e in got] == [
            (Operation.CREATE, vips),
            (Operation.UPDATE, more),
            (Operation.DELETE, more),
        ]
    assert (await store.get(ResourceKey("Mesh", "", "default"))).resource == mesh("default")


async def test_secrets_round_trip(store: Store) -> None:
    """Secret (in a mesh) and GlobalSecret are stored, listed, watched, updated and deleted
    like any other resource; a value that is not base64 is refused without being quoted."""
    await store.create(mesh("default"))
    async with store.watch() as events:
        await read_snapshot(events)
        secret = Secret(mesh="default", name="signing-1", data="c2VjcmV0LXZhbHVl")
        shared = GlobalSecret(name="cp-tls", data="Y2VydA==")
        created = await store.create(secret)
        assert created.key == ResourceKey("Secret", "default", "signing-1")
        await store.create(shared)
        assert (await store.get(created.key)).resource.value == b"secret-value"  # type: ignore[union-attr]
        assert [i.resource for i in (await store.list("Secret", "default")).items] == [secret]
        assert [i.resource for i in (await store.list("GlobalSecret")).items] == [shared]
        with pytest.raises(ValidationError) as refused:
            await store.update(
                Secret(mesh="default", name="signing-1", data="not base64 s3cr3t!"),
                version=created.meta.version,
            )
        assert "s3cr3t" not in str(refused.value)
        rotated = Secret(mesh="default", name="signing-1", data="bmV3")
        updated = await store.update(rotated, version=created.meta.version)
        await store.delete(created.key, version=updated.meta.version)
        got = await read_events(events, 4)
        assert [(e.operation, e.resource) for e in got] == [
            (Operation.CREATE, secret),
            (Operation.CREATE, shared),
            (Operation.UPDATE, rotated),
            (Operation.DELETE, rotated),
        ]


EXTERNAL = """\
type: ExternalService
mesh: default
name: httpbin
networking:
  address: "[fd00:a123::1]:443"
  disableHostDNSEntry: true
  tls:
    enabled: true
    serverName: httpbin.org
    caCert: {inline: Q0EgUEVN}
    clientKey: {secret: httpbin-key}
tags: {kuma.io/service: httpbin, kuma.io/protocol: http}
"""


async def _round_trip(store: Store, text: str, invalid: str, changed: str) -> None:
    """``text`` (a valid mesh-scoped resource in mesh default) is stored, listed, watched,
    updated to ``changed`` and deleted exactly; ``invalid`` is refused as an update."""
    await store.create(mesh("default"))
    async with store.watch() as events:
        await read_snapshot(events)
        resource = decode_one(text)
        created = await store.create(resource)
        assert created.key == ResourceKey(resource.TYPE, "default", resource.name)
        assert (await store.get(created.key)).resource == resource
        listed = await store.list(resource.TYPE, "default")
        assert [i.resource for i in listed.items] == [resource]
        with pytest.raises(ValidationError):
            await store.update(decode_one(invalid), version=created.meta.version)
        moved = decode_one(changed)
        updated = await store.update(moved, version=created.meta.version)
        await store.delete(created.key, version=updated.meta.version)
        got = await read_events(events, 3)
        assert [(e.operation, e.resource) for e in got] == [
            (Operation.CREATE, resource),
            (Operation.UPDATE, moved),
            (Operation.DELETE, moved),
        ]


async def test_external_services_round_trip(store: Store) -> None:
    """An ExternalService (mesh-scoped, inline bytes, a field spelled ``disableHostDNSEntry``)
    is stored, listed, watched, updated and deleted byte for byte; an invalid one is refused."""
    assert isinstance(decode_one(EXTERNAL), ExternalService)
    await _round_trip(
        store,
        EXTERNAL,
        EXTERNAL.replace("[fd00:a123::1]:443", "httpbin.org"),
        EXTERNAL.replace("[fd00:a123::1]:443", "httpbin.org:8443"),
    )


GATEWAY = """\
type: MeshGateway
mesh: default
name: edge
selectors: [{match: {kuma.io/service: edge}}]
conf:
  listeners:
    - {port: 8080, protocol: HTTP, hostname: a.example.com, crossMesh: true}
    - {port: 8443, protocol: HTTPS, tls: {mode: TERMINATE, certificates: [{secret: cert}]}}
"""


async def test_mesh_gateways_round_trip(store: Store) -> None:
    """A MeshGateway (selectors, listeners with a field spelled ``crossMesh``, TLS
    DataSources) round-trips in every store; an invalid one is refused."""
    assert isinstance(decode_one(GATEWAY), MeshGateway)
    await _round_trip(
        store,
        GATEWAY,
        GATEWAY.replace("port: 8443", "port: 0"),
        GATEWAY.replace("port: 8443", "port: 9443"),
    )

"""The composite ConfigSource: each type URL read from the source that owns it, change sets
merged, one wait covering every member (with and without the listener fast path)."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from kuma.xds.composite import CompositeSource, CompositeWatch
from kuma.xds.engine import Engine
from kuma.xds.secrets import EmptySecretSource
from kuma.xds.source import ProxyWatch
from kuma.xds.types import CLUSTER, LISTENER, SECRET

from .fakes import DEADLINE, NODE, FakeSource, FakeWatch, ads_channel, delta_state, delta_stream
from .secret_double import SecretsDouble, secret
from .test_engine import dataplane, put

pytestmark = pytest.mark.anyio


async def changes_after_wait(watch: ProxyWatch) -> dict[str, set[str]]:
    with anyio.fail_after(DEADLINE):
        await watch.wait_for_changes()
    return watch.take_changes()


async def test_types_are_read_from_their_owner_and_changes_merged() -> None:
    engine, secrets = Engine(), SecretsDouble()
    engine.apply_now(put(dataplane("web-1", "web", outbounds=("backend",))))
    source = CompositeSource(engine, {SECRET: secrets})
    async with source.watch_proxy("default.web-1") as watch:
        assert watch.known
        assert watch.node_id == "default.web-1"
        assert "backend" in watch.resources(CLUSTER)
        assert watch.resources(SECRET) == {}
        watch.take_changes()

        issued = secrets.issue("default.web-1", "identity_cert:secret:default")
        assert await changes_after_wait(watch) == {SECRET: {"identity_cert:secret:default"}}
        assert watch.resources(SECRET) == {issued.name: issued}

        # Both members change before the stream looks: one merged change set.
        engine.apply_now(put(dataplane("web-1", "web", outbounds=("backend", "db"))))
        secrets.issue("default.web-1", "identity_cert:secret:default", rev=1)
        changes = await changes_after_wait(watch)
        assert changes[SECRET] == {"identity_cert:secret:default"}
        assert "db" in changes[CLUSTER]
    # Closed: the member watches are closed too.
    assert secrets.watches["default.web-1"] == []


async def test_a_member_cannot_speak_for_a_type_it_does_not_own() -> None:
    primary, secrets = FakeSource(), SecretsDouble()
    proxy = primary.proxy(known=True)
    source = CompositeSource(primary, {SECRET: secrets})
    async with source.watch_proxy(NODE) as watch:
        proxy.state[SECRET] = {"x": secret("x")}
        proxy.watches[0].mark(SECRET, ["x"])
        proxy.put(LISTENER, "l")
        assert watch.take_changes() == {LISTENER: {"l"}}
        assert watch.resources(SECRET) == {}


async def test_a_shared_type_is_served_from_both() -> None:
    # A builtin gateway's certificates (the engine's) beside the SecretSource's Secrets.
    primary, secrets = FakeSource(), SecretsDouble()
    proxy = primary.proxy(known=True)
    source = CompositeSource(primary, {SECRET: secrets}, shared={SECRET})
    async with source.watch_proxy(NODE) as watch:
        proxy.state[SECRET] = {"cert": secret("cert")}
        proxy.watches[0].mark(SECRET, ["cert"])
        issued = secrets.issue(NODE, "identity")
        assert watch.take_changes() == {SECRET: {"cert", "identity"}}
        assert watch.resources(SECRET) == {"cert": secret("cert"), "identity": issued}


async def test_waits_on_members_without_the_listener_fast_path() -> None:
    # This FakeSource's watch has no set_listener: the composite races one waiter per member.
    primary, secrets = FakeSource(listenable=False), SecretsDouble()
    proxy = primary.proxy(known=True)
    source = CompositeSource(primary, {SECRET: secrets})
    async with source.watch_proxy(NODE) as watch:

        async def issue_later() -> None:
            await anyio.lowlevel.checkpoint()  # the composite is waiting by now
            secrets.issue(NODE, "ca", rev=2)

        async with anyio.create_task_group() as tg:
            tg.start_soon(issue_later)
            assert await changes_after_wait(watch) == {SECRET: {"ca"}}
        proxy.put(CLUSTER, "c")
        assert await changes_after_wait(watch) == {CLUSTER: {"c"}}


async def test_the_primary_cannot_also_be_routed() -> None:
    engine = Engine()
    with pytest.raises(ValueError, match="primary"):
        CompositeSource(engine, {SECRET: engine})


async def test_the_empty_secret_source_never_changes() -> None:
    engine = Engine()
    engine.apply_now(put(dataplane("web-1", "web")))
    source = CompositeSource(engine, {SECRET: EmptySecretSource()})
    async with source.watch_proxy("default.web-1") as watch:
        watch.take_changes()
        assert watch.resources(SECRET) == {}
        with anyio.move_on_after(0.05) as waited:
            await watch.wait_for_changes()
        assert waited.cancel_called


async def test_a_stream_gets_and_follows_secrets_from_the_secret_source() -> None:
    primary, secrets = FakeSource(), SecretsDouble()
    primary.proxy(known=True)
    issued = secrets.issue(NODE, "identity")
    async with (
        ads_channel(CompositeSource(primary, {SECRET: secrets})) as channel,
        delta_stream(channel) as client,
    ):
        await client.send(SECRET, ["identity"])
        response = await client.recv()
        assert (response.type_url, delta_state(response)) == (
            SECRET,
            {"identity": issued.version},
        )
        await client.ack(response)
        rotated = secrets.issue(NODE, "identity", rev=1)
        response = await client.recv()
        assert delta_state(response) == {"identity": rotated.version}


async def test_whether_a_watch_is_listenable_is_decided_once_per_class() -> None:
    """isinstance on the runtime-checkable ListenableWatch looks every member up on the
    instance (it evaluates ``has_changes``): a stream's opening must not pay for that."""
    looked_up = 0

    class CountingWatch(FakeWatch):
        @property
        def has_changes(self) -> bool:
            nonlocal looked_up
            looked_up += 1
            return False

        def set_listener(self, listener: object) -> None:
            self.listener = listener

    proxy = FakeSource().proxy(known=True)
    watches = [CountingWatch(proxy) for _ in range(3)]
    for watch in watches:
        CompositeWatch(watch, frozenset(), []).close()
    assert all(watch.listener is None for watch in watches)  # set, then cleared
    assert looked_up <= 1


async def wait_ends_by_itself(watch: ProxyWatch) -> bool:
    """Whether ``wait_for_changes`` returns with nothing more happening (it is cancelled once
    every task is blocked, if not)."""
    ended = False
    async with anyio.create_task_group() as tg:

        async def wait() -> None:
            nonlocal ended
            await watch.wait_for_changes()
            ended = True

        tg.start_soon(wait)
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    return ended


@pytest.mark.parametrize("listening", [True, False], ids=["listener", "race"])
async def test_a_poke_ends_the_wait_once_with_nothing_changed(listening: bool) -> None:
    """The stream's receive loop pokes the watch when a request created work: the send loop's
    one wait ends then (and only the next one), with no change to take."""
    engine, secrets = Engine(), SecretsDouble()
    engine.apply_now(put(dataplane("web-1", "web", outbounds=("backend",))))
    primary = engine if listening else FakeSource(listenable=False)
    if isinstance(primary, FakeSource):
        primary.proxy(known=True)
    source = CompositeSource(primary, {SECRET: secrets})
    async with source.watch_proxy("default.web-1" if listening else NODE) as watch:
        watch.take_changes()
        assert not await wait_ends_by_itself(watch)
        async with anyio.create_task_group() as tg:
            tg.start_soon(changes_after_wait, watch)
            await anyio.wait_all_tasks_blocked()
            watch.poke()
        assert watch.take_changes() == {}
        # A poke while nobody waits ends the next wait at once, and only that one.
        watch.poke()
        assert await wait_ends_by_itself(watch)
        assert not await wait_ends_by_itself(watch)

"""A source's ``watch_proxy`` context in one slotted object (:mod:`kuma.xds.watch_context`):
the composite source's members left in reverse order, as an exit stack would, each seeing the
exception the later ones left; no generator, exit stack or instance dict kept per stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

from kuma.mtls.identities import Identities
from kuma.mtls.sds import MtlsSecretSource
from kuma.xds.composite import CompositeSource
from kuma.xds.engine import Engine
from kuma.xds.types import SECRET
from kuma.xds.watch_context import WatchContext, enter, exit_all

from .test_engine import dataplane, put

pytestmark = pytest.mark.anyio


class Boom(Exception):
    pass


def recording(
    log: list[str], name: str, *, raise_on_exit: bool = False, suppress: bool = False
) -> AbstractAsyncContextManager[str]:
    @asynccontextmanager
    async def context() -> AsyncIterator[str]:
        log.append(f"enter {name}")
        try:
            yield name
        except BaseException as error:
            log.append(f"exit {name} with {error!r}")
            if suppress:
                return
            raise
        else:
            log.append(f"exit {name}")
        finally:
            if raise_on_exit:
                raise Boom(name)

    return context()


async def test_exit_all_leaves_in_reverse_order() -> None:
    log: list[str] = []
    entered: list[Any] = []
    for name in ("a", "b", "c"):
        assert await enter(recording(log, name), entered) == name
    assert await exit_all(entered, None) is False
    assert log == ["enter a", "enter b", "enter c", "exit c", "exit b", "exit a"]


async def test_each_exit_sees_what_the_later_ones_left() -> None:
    log: list[str] = []
    entered: list[Any] = []
    await enter(recording(log, "a"), entered)
    await enter(recording(log, "b", raise_on_exit=True), entered)
    await enter(recording(log, "c"), entered)
    original = ValueError("body")
    with pytest.raises(Boom) as raised:
        await exit_all(entered, original)
    assert log[3:] == [
        "exit c with ValueError('body')",
        "exit b with ValueError('body')",
        "exit a with Boom('b')",
    ]
    assert raised.value.__context__ is original


async def test_a_suppressed_exception_is_reported() -> None:
    log: list[str] = []
    entered: list[Any] = []
    await enter(recording(log, "a"), entered)
    await enter(recording(log, "b", suppress=True), entered)
    assert await exit_all(entered, ValueError("body")) is True
    assert log[2:] == ["exit b with ValueError('body')", "exit a"]


async def test_a_watch_context_opens_and_closes() -> None:
    log: list[Any] = []
    context = WatchContext(lambda node, meta: (node, meta), log.append, "default.a", "m")
    async with context as watch:
        assert watch == ("default.a", "m")
        assert log == []
    assert log == [("default.a", "m")]
    with pytest.raises(Boom):
        async with WatchContext(lambda node, meta: node, log.append, "default.b"):
            raise Boom
    assert log[-1] == "default.b"


async def test_a_stream_keeps_no_generator_or_exit_stack() -> None:
    engine = Engine()
    engine.apply_now(put(dataplane("web-1", "web", outbounds=("backend",))))
    secrets = MtlsSecretSource(Identities())
    source = CompositeSource(engine, {SECRET: secrets}, shared={SECRET})
    contexts = [
        source.watch_proxy("default.web-1"),
        engine.watch_proxy("default.web-1"),
        secrets.watch_proxy("default.web-1"),
    ]
    for context in contexts:
        assert not hasattr(context, "__dict__"), type(context)
    async with contexts[0] as watch:
        assert watch.known
        assert secrets.connected("default.web-1")
    assert not secrets.connected("default.web-1")

"""Whether an observer has an optional hook (VersionObserver, StaleReplyObserver,
PropagationObserver) is decided once per observer class, not at every stream opening."""

from __future__ import annotations

from typing import Any

import pytest

from kuma.xds.generate.types import CLUSTER
from kuma.xds.server.observer import (
    NoopObserver,
    PropagationObserver,
    StaleReplyObserver,
    VersionObserver,
    has_hook,
)

from .fakes import FakeSource, RecordingObserver, ads_channel, delta_stream

pytestmark = pytest.mark.anyio

HOOKS = frozenset({"on_stream_version", "on_stale_reply", "on_change_delivered"})


class HooklessObserver(NoopObserver):
    """No optional hook; counts how often one is looked for (``hasattr`` of a missing
    attribute reaches ``__getattr__``, as ``isinstance`` on a runtime Protocol does)."""

    looked_for = 0

    def __init__(self) -> None:
        self.opened = 0

    def on_stream_open(self, stream_id: int, node_id: str, protocol: Any, version: str) -> None:
        self.opened += 1

    def __getattr__(self, name: str) -> Any:
        if name in HOOKS:
            type(self).looked_for += 1
        raise AttributeError(name)


def test_has_hook_answers_as_isinstance() -> None:
    recording, hookless = RecordingObserver(), HooklessObserver()
    for hook in (VersionObserver, StaleReplyObserver, PropagationObserver):
        assert has_hook(recording, hook) == isinstance(recording, hook)
        assert not has_hook(hookless, hook)
    assert has_hook(recording, StaleReplyObserver)


async def test_stream_openings_do_not_look_for_hooks_each_time() -> None:
    source, observer = FakeSource(), HooklessObserver()
    source.proxy().put(CLUSTER, "a")
    has_hook(observer, VersionObserver)  # a first opening, elsewhere, decided it already
    has_hook(observer, StaleReplyObserver)
    has_hook(observer, PropagationObserver)
    decided = HooklessObserver.looked_for
    async with ads_channel(source, observer) as channel:  # type: ignore[arg-type]
        for _ in range(3):
            async with delta_stream(channel) as client:
                await client.send(CLUSTER)
                await client.recv()
                await client.close()
    assert observer.opened == 3
    assert HooklessObserver.looked_for == decided

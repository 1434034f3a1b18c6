"""The received frames' text costs their first bytes: the same text as hyperframe's own."""

from __future__ import annotations

import hyperframe.frame
import pytest

from kuma.xds.server import frame_repr
from kuma.xds.server.demux import SharedPortServer


def test_the_text_is_hyperframes_for_every_length() -> None:
    original = frame_repr.ORIGINAL
    assert original is not None, "hyperframe no longer has _raw_data_repr: review frame_repr"
    for size in [*range(40), 16_384, 61_000]:
        data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
        assert frame_repr.raw_data_repr(data) == original(data), size
        assert frame_repr.raw_data_repr(memoryview(data)) == original(memoryview(data)), size
    assert frame_repr.raw_data_repr(None) == original(None)


@pytest.mark.anyio
async def test_the_dp_port_server_installs_it() -> None:
    SharedPortServer([], http1=lambda: None)  # type: ignore[arg-type, return-value]
    assert hyperframe.frame._raw_data_repr is frame_repr.raw_data_repr
    big = hyperframe.frame.DataFrame(1, b"\x01" * 16_384)
    assert repr(big).endswith("<hex:01010101010101010101...>")

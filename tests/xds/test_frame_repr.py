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


class _TraceLog:
    """An h2 logger that writes (keeps) every trace line, as a real one would."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def debug(self, fmtstr: str, *args: object) -> None:
        pass

    def trace(self, fmtstr: str, *args: object) -> None:
        self.lines.append(fmtstr % args)


@pytest.mark.anyio
async def test_h2_writes_the_same_received_frame_text_formatted_when_written() -> None:
    import h2.config
    import h2.connection

    SharedPortServer([], http1=lambda: None)  # type: ignore[arg-type, return-value]
    assert frame_repr._defers_safely(), "h2 uses repr otherwise: review frame_repr"
    assert h2.connection.repr is frame_repr.DeferredRepr  # type: ignore[attr-defined]
    log = _TraceLog()
    server = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, logger=log)  # type: ignore[arg-type]
    )
    server.initiate_connection()
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.increment_flow_control_window(1_000)
    server.receive_data(client.data_to_send())
    frames = [line for line in log.lines if line.startswith("Received frame: ")]
    # The same text as hyperframe's, formatted when the logger wrote the line.
    assert len(frames) == 2, frames
    assert frames[0].startswith("Received frame: SettingsFrame(stream_id=0, flags=[]): settings=")
    increment = hyperframe.frame.WindowUpdateFrame(0, window_increment=1_000)
    assert frames[1] == f"Received frame: {increment!r}"

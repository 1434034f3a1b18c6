"""Record boundaries read from TLS record headers (kuma/xds/server/tls_records.py)."""

from __future__ import annotations

import random

from kuma.xds.server.tls_records import MAX_RECORD, RecordBoundaries


def record(kind: int, body: int) -> bytes:
    return bytes([kind, 3, 3]) + body.to_bytes(2, "big") + bytes(body)


def stream_ends(records: list[bytes]) -> list[int]:
    ends, total = [], 0
    for one in records:
        total += len(one)
        ends.append(total)
    return ends


def feed(boundaries: RecordBoundaries, stream: bytes, cuts: list[int]) -> list[int] | None:
    """The record ends found feeding ``stream`` cut at ``cuts``, as offsets in the stream."""
    found: list[int] = []
    start = 0
    for stop in [*cuts, len(stream)]:
        ends = boundaries.ends(memoryview(stream[start:stop]))
        if ends is None:
            return None
        found += [start + end for end in ends]
        start = stop
    return found


def test_one_whole_record_ends_at_its_last_byte() -> None:
    assert RecordBoundaries().ends(memoryview(record(23, 300))) == [305]


def test_every_record_end_is_found_however_the_stream_is_cut() -> None:
    rng = random.Random(15)
    records = [record(22, 512), record(20, 1), record(23, 0), record(23, 16_401)]
    records += [record(rng.choice((21, 23)), rng.randrange(0, 3000)) for _ in range(40)]
    stream = b"".join(records)
    # Cut at every byte of the first records (headers split at each position), then at random.
    for cut in range(1, 530):
        assert feed(RecordBoundaries(), stream, [cut]) == stream_ends(records)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(stream)), rng.randrange(1, 60)))
        assert feed(RecordBoundaries(), stream, cuts) == stream_ends(records)
    one_byte_at_a_time = list(range(1, len(stream)))
    assert feed(RecordBoundaries(), stream, one_byte_at_a_time) == stream_ends(records)


def test_bytes_that_are_not_tls_records_stop_the_tracking_for_good() -> None:
    boundaries = RecordBoundaries()
    assert boundaries.ends(memoryview(b"GET / HTTP/1.1\r\n")) is None
    assert boundaries.ends(memoryview(record(23, 10))) is None
    too_long = bytes([23, 3, 3]) + (MAX_RECORD + 1).to_bytes(2, "big")
    assert RecordBoundaries().ends(memoryview(record(23, 10) + too_long)) is None

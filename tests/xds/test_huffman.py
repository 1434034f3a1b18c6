import random
from typing import cast

import hpack.hpack
import pytest
from hpack import Decoder, Encoder, huffman_table
from hpack.exceptions import HPACKDecodingError
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH

from kuma.xds.server import huffman
from kuma.xds.server.demux import SharedPortServer

HPACKS = huffman_table.decode_huffman
ENCODER = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)


def installed() -> huffman.Decode:
    """The decoder hpack's Decoder calls (a module global hpack does not export)."""
    return cast(huffman.Decode, vars(hpack.hpack)["decode_huffman"])


def outcome(decode: huffman.Decode, data: bytes | memoryview) -> tuple[str, bytes | str]:
    try:
        return "decoded", decode(data)
    except HPACKDecodingError as exc:
        return "rejected", str(exc)


@pytest.fixture(scope="module")
def byte_at_a_time() -> huffman.Decode:
    return huffman.byte_decoder(huffman_table.HUFFMAN_TABLE, HPACKDecodingError)


def test_it_decodes_what_hpack_decodes_and_rejects_what_it_rejects(
    byte_at_a_time: huffman.Decode,
) -> None:
    rng = random.Random(15)
    for _ in range(3000):
        text = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        encoded = ENCODER.encode(text)
        assert outcome(byte_at_a_time, encoded) == ("decoded", text)
        garbage = bytes(rng.randrange(256) for _ in range(rng.randrange(12)))
        assert outcome(byte_at_a_time, garbage) == outcome(HPACKS, garbage)
        if encoded:
            flipped = bytearray(encoded)
            flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
            assert outcome(byte_at_a_time, bytes(flipped)) == outcome(HPACKS, bytes(flipped))
            cut = memoryview(encoded)[:-1]
            assert outcome(byte_at_a_time, cut) == outcome(HPACKS, cut)


def test_invalid_and_incomplete_strings_are_told_apart(byte_at_a_time: huffman.Decode) -> None:
    eos = b"\xff\xff\xff\xff"  # EOS (30 ones) inside a string: invalid
    padding_of_zeros = b"\x00"  # '0' (5 bits) then three 0 bits: not a prefix of EOS
    assert outcome(byte_at_a_time, eos) == ("rejected", "Invalid Huffman string")
    assert outcome(byte_at_a_time, padding_of_zeros) == outcome(HPACKS, padding_of_zeros)
    assert outcome(byte_at_a_time, padding_of_zeros)[0] == "rejected"
    assert byte_at_a_time(b"") == b""


def test_installed_hpack_decodes_a_token_header_as_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hpack.hpack, "decode_huffman", HPACKS)
    token = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ." + "x-Y_z9" * 90
    headers = [(":method", "POST"), (":path", "/a/b"), ("authorization", token)]
    block = Encoder().encode(headers, huffman=True)
    before = cast(list[tuple[str, str]], Decoder().decode(block))
    assert huffman.install()
    assert installed() is not HPACKS
    assert huffman.install()  # idempotent
    assert cast(list[tuple[str, str]], Decoder().decode(block)) == before
    assert dict(before)["authorization"] == token


def test_an_unknown_hpack_layout_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hpack.hpack, "decode_huffman", HPACKS)
    monkeypatch.setattr(huffman_table, "HUFFMAN_TABLE", huffman_table.HUFFMAN_TABLE[:-16])
    assert not huffman.install()
    assert installed() is HPACKS


@pytest.mark.anyio
async def test_the_dp_port_server_installs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hpack.hpack, "decode_huffman", HPACKS)
    SharedPortServer([], http1=lambda: None)  # type: ignore[arg-type, return-value]
    assert installed().__module__ == huffman.__name__

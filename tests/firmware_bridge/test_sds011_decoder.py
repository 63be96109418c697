"""SDS011 decoder: framing under any chunking, garbage and corruption."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.protocols.sds011 import Sds011Decoder
from firmware_bridge.protocols.sds011.frames import Sds011Measurement


def data_frame(p25: int, p10: int, id1: int, id2: int) -> bytes:
    body = bytes((p25 & 0xFF, p25 >> 8, p10 & 0xFF, p10 >> 8, id1, id2))
    return b"\xaa\xc0" + body + bytes((sum(body) & 0xFF, 0xAB))


u16 = st.integers(0, 0xFFFF)
u8 = st.integers(0, 0xFF)
readings = st.tuples(u16, u16, u8, u8)
# Garbage without the sync byte 0xAA: then no header can form across garbage and frame
# boundaries, so the exact frame sequence is the only right answer. Sync bytes inside
# payloads and checksums still occur (the values above cover all bytes).
garbage = st.binary(max_size=40).map(lambda b: b.replace(b"\xaa", b"\x55"))


def expected(reading: tuple[int, int, int, int]) -> Sds011Measurement:
    p25, p10, id1, id2 = reading
    return Sds011Measurement(p25 / 10, p10 / 10, f"{id1:02x}{id2:02x}")


def chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@given(
    st.lists(st.tuples(garbage, readings), max_size=30),
    garbage,
    st.lists(st.integers(0, 10_000), max_size=40),
)
def test_frames_survive_any_chunking_and_garbage(
    items: list[tuple[bytes, tuple[int, int, int, int]]], tail: bytes, cuts: list[int]
) -> None:
    stream = b"".join(g + data_frame(*r) for g, r in items) + tail
    decoder = Sds011Decoder()
    out = [f for chunk in chunks(stream, cuts) for f in decoder.feed(chunk)]
    assert out == [expected(r) for _, r in items]
    assert decoder.stats.frames == len(items)
    assert decoder.stats.checksum_errors == 0
    assert decoder.stats.bytes_skipped == sum(len(g) for g, _ in items) + len(tail)


@given(st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=20))
def test_random_bytes_never_crash_and_every_byte_is_accounted_for(data: bytes, cuts: list[int]) -> None:
    decoder = Sds011Decoder()
    out = [f for chunk in chunks(data, cuts) for f in decoder.feed(chunk)]
    assert decoder.stats.frames == len(out)
    assert decoder.buffered <= 9
    assert 10 * len(out) + decoder.stats.bytes_skipped + decoder.buffered == len(data)


def test_one_byte_at_a_time() -> None:
    frames = [data_frame(1236, 2618, 0xA1, 0x60), data_frame(0xC0AA, 0xAAAA, 0xAA, 0xC0)]
    decoder = Sds011Decoder()
    out = [f for byte in b"".join(frames) for f in decoder.feed(bytes((byte,)))]
    assert out == [
        Sds011Measurement(123.6, 261.8, "a160"),
        Sds011Measurement(0xC0AA / 10, 0xAAAA / 10, "aac0"),
    ]


def test_truncated_frame_then_full_frame() -> None:
    good = data_frame(1236, 2618, 0xA1, 0x60)
    decoder = Sds011Decoder()
    assert decoder.feed(good[:5] + good) == [Sds011Measurement(123.6, 261.8, "a160")]
    assert decoder.stats.bytes_skipped == 5
    assert decoder.stats.checksum_errors == 0


def test_bad_checksum_is_counted_and_skipped_without_losing_the_next_frame() -> None:
    good = data_frame(1236, 2618, 0xA1, 0x60)
    bad = good[:8] + bytes((good[8] ^ 0x01,)) + good[9:]
    decoder = Sds011Decoder()
    assert decoder.feed(bad + good) == [Sds011Measurement(123.6, 261.8, "a160")]
    assert decoder.stats.checksum_errors == 1
    assert decoder.stats.bytes_skipped == 10


def test_megabyte_in_one_feed() -> None:
    frame = data_frame(250, 400, 0x12, 0x34)
    decoder = Sds011Decoder()
    out = decoder.feed(frame * 100_000)
    assert len(out) == 100_000
    assert out[-1] == Sds011Measurement(25.0, 40.0, "1234")


def test_finish_counts_a_truncated_tail() -> None:
    decoder = Sds011Decoder()
    decoder.feed(data_frame(1, 2, 3, 4)[:7])
    assert decoder.buffered == 7
    decoder.finish()
    assert (decoder.buffered, decoder.stats.bytes_skipped) == (0, 7)

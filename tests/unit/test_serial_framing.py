from __future__ import annotations

import random
from pathlib import Path

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from app.camera.serial_framing import (
    JPEG_EOI,
    JPEG_SOI,
    MAGIC,
    MIN_JPEG_BYTES,
    OpenIrisFrameParser,
    encode_packet,
    keep_newest,
)
from tests.fakes.jpeg import make_jpegs

JPEGS = make_jpegs(4, width=64, height=48)


def _is_jpeg(payload: bytes) -> bool:
    return payload.startswith(JPEG_SOI) and payload.endswith(JPEG_EOI) and len(payload) >= MIN_JPEG_BYTES


def _feed_in_chunks(parser: OpenIrisFrameParser, stream: bytes, cuts: list[int]) -> list[bytes]:
    out: list[bytes] = []
    start = 0
    for cut in [*sorted(set(cuts)), len(stream)]:
        out += parser.feed(stream[start:cut])
        start = cut
    return out


def test_back_to_back_packets_are_all_recovered() -> None:
    parser = OpenIrisFrameParser()
    out = parser.feed(b"".join(encode_packet(j) for j in JPEGS))
    assert out == JPEGS
    assert parser.counters.packets == 4
    assert parser.counters.rejected == 0
    assert parser.counters.bytes_skipped == 0
    assert parser.buffered_bytes == 0


def test_text_lines_between_packets_are_skipped() -> None:
    noise = [b"[INFO] wifi: connecting\r\n", b"E (1234) cam: fb timeout\n", b"", b"\x00\x01garbage\xff"]
    stream = b"".join(n + encode_packet(j) for n, j in zip(noise, JPEGS, strict=True)) + b"tail text\n"
    parser = OpenIrisFrameParser()
    assert _feed_in_chunks(parser, stream, list(range(0, len(stream), 7))) == JPEGS
    assert parser.counters.bytes_skipped == sum(len(n) for n in noise) + len(b"tail text\n") - 3
    assert parser.counters.rejected == 0


def test_truncated_packet_does_not_swallow_the_next_one() -> None:
    truncated = encode_packet(JPEGS[0])[: len(JPEGS[0]) // 2]
    parser = OpenIrisFrameParser()
    assert parser.feed(truncated + encode_packet(JPEGS[1])) == [JPEGS[1]]
    assert parser.counters.rejected == 1
    assert parser.counters.bytes_skipped == len(truncated)


def test_huge_length_field_is_recovered_from_without_waiting_for_64k() -> None:
    bogus = MAGIC + (0xFFF0).to_bytes(2, "little") + JPEG_SOI + b"\x00" * 20
    parser = OpenIrisFrameParser()
    assert parser.feed(bogus + encode_packet(JPEGS[2])) == [JPEGS[2]]
    assert parser.counters.rejected == 1


def test_implausible_lengths_and_non_jpeg_payloads_are_rejected() -> None:
    tiny = MAGIC + (10).to_bytes(2, "little") + b"\xff\xd8" + b"\x00" * 6 + b"\xff\xd9"
    not_jpeg = encode_packet(b"\x89PNG" + b"\x00" * 200)
    no_eoi = encode_packet(JPEGS[0][:-2] + b"\x00\x00")
    parser = OpenIrisFrameParser()
    assert parser.feed(tiny + not_jpeg + no_eoi + encode_packet(JPEGS[3])) == [JPEGS[3]]
    assert parser.counters.rejected == 3
    assert parser.counters.packets == 1


def test_buffer_stays_bounded_on_endless_garbage() -> None:
    parser = OpenIrisFrameParser()
    rng = random.Random(1)
    for _ in range(50):
        assert parser.feed(bytes(rng.getrandbits(8) for _ in range(4096)).replace(MAGIC, b"")) == []
        assert parser.buffered_bytes < len(MAGIC)


def test_fixture_bad_packet_then_good_packet() -> None:
    """The fixture: a header claiming 300 bytes, an SOI, then a firmware log line (the camera rebooted)."""
    bad = (Path(__file__).parents[1] / "fixtures" / "bad_serial_packet.bin").read_bytes()
    parser = OpenIrisFrameParser()
    assert parser.feed(bad + encode_packet(JPEGS[0]) + encode_packet(JPEGS[1])) == JPEGS[:2]
    assert parser.counters.rejected >= 1


def test_keep_newest_drops_the_backlog() -> None:
    assert keep_newest([]) == (None, 0)
    assert keep_newest(JPEGS) == (JPEGS[-1], 3)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(min_value=0, max_value=3000), max_size=20))
def test_any_bytes_never_raise_and_never_yield_a_non_jpeg(stream: bytes, cuts: list[int]) -> None:
    parser = OpenIrisFrameParser()
    for payload in _feed_in_chunks(parser, stream, [c for c in cuts if c <= len(stream)]):
        assert _is_jpeg(payload)
    assert parser.buffered_bytes <= len(stream)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(min_size=MIN_JPEG_BYTES, max_size=600), min_size=1, max_size=6),
    st.lists(st.binary(max_size=40), max_size=6),
    st.lists(st.integers(min_value=0, max_value=5000), max_size=30),
)
def test_valid_packets_at_any_chunking_are_all_recovered(
    bodies: list[bytes], noise: list[bytes], cuts: list[int]
) -> None:
    jpegs = [JPEG_SOI + body + JPEG_EOI for body in bodies]
    noise = noise + [b""] * (len(jpegs) - len(noise))
    stream = b"".join(n + encode_packet(j) for n, j in zip(noise, jpegs, strict=False))
    # Real JPEGs never hold the magic; random bodies and noise may, and then nothing can be promised.
    assume(stream.count(MAGIC) == len(jpegs))
    parser = OpenIrisFrameParser()
    assert _feed_in_chunks(parser, stream, [c for c in cuts if c <= len(stream)]) == jpegs
    assert parser.counters.rejected == 0

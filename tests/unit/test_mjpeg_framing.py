from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from app.camera.mjpeg_framing import (
    JPEG_EOI,
    JPEG_SOI,
    ChunkedDecoder,
    MultipartJpegParser,
    StreamFormatError,
    parse_response_head,
)
from tests.fakes.jpeg import make_jpegs

BOUNDARY = b"123456789000000000000987654321"
JPEGS = make_jpegs(3, width=64, height=48)


def _part(jpeg: bytes, *, length: int | None = -1, ts: str | None = "12.000345") -> bytes:
    headers = [b"Content-Type: image/jpeg"]
    if length is not None:
        headers.append(b"Content-Length: %d" % (len(jpeg) if length == -1 else length))
    if ts is not None:
        headers.append(b"X-Timestamp: " + ts.encode())
    return b"\r\n--" + BOUNDARY + b"\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" + jpeg


def _chunked(pieces: list[bytes]) -> bytes:
    return b"".join(b"%X\r\n%s\r\n" % (len(p), p) for p in pieces)


def _feed_in_chunks(parser: MultipartJpegParser, stream: bytes, cuts: list[int]) -> list[bytes]:
    out: list[bytes] = []
    start = 0
    for cut in [*sorted(set(cuts)), len(stream)]:
        out += [p.jpeg for p in parser.feed(stream[start:cut])]
        start = cut
    return out


def test_response_head_of_esp_http_server() -> None:
    head = parse_response_head(
        b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=" + BOUNDARY + b"\r\n"
        b"Transfer-Encoding: chunked\r\nX-Framerate: 60"
    )
    assert head.status == 200 and head.is_chunked and head.boundary == BOUNDARY
    assert (
        parse_response_head(b'HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary="fr"').boundary
        == b"fr"
    )
    with pytest.raises(StreamFormatError):
        parse_response_head(b"SSH-2.0-OpenSSH_9.6")


def test_parts_carry_the_camera_timestamp() -> None:
    parser = MultipartJpegParser(BOUNDARY)
    parts = parser.feed(_part(JPEGS[0]) + _part(JPEGS[1], ts="1700000000.250000"))
    assert [p.jpeg for p in parts] == JPEGS[:2]
    assert [p.device_ts_s for p in parts] == [12.000345, 1700000000.25]
    assert parser.counters.bytes_skipped == 0


def test_part_with_content_length_is_handed_out_before_the_next_boundary() -> None:
    parser = MultipartJpegParser(BOUNDARY)
    assert [p.jpeg for p in parser.feed(_part(JPEGS[0]))] == [JPEGS[0]]


def test_part_without_content_length_ends_at_the_next_boundary() -> None:
    parser = MultipartJpegParser(BOUNDARY)
    assert parser.feed(_part(JPEGS[0], length=None)) == []
    assert [p.jpeg for p in parser.feed(_part(JPEGS[1], length=None))] == [JPEGS[0]]


def test_wrong_content_length_drops_only_that_part() -> None:
    stream = (
        _part(JPEGS[0], length=len(JPEGS[0]) - 40)
        + _part(JPEGS[1], length=len(JPEGS[1]) + 400)
        + _part(JPEGS[2], length=len(JPEGS[2]) + 2)  # a length counting the CRLF is tolerated
        + b"\r\n"
        + _part(JPEGS[0])
    )
    parser = MultipartJpegParser(BOUNDARY)
    assert [p.jpeg for p in parser.feed(stream)] == [JPEGS[2], JPEGS[0]]
    assert parser.counters.corrupt == 2


def test_oversized_part_is_dropped_and_the_parser_resyncs() -> None:
    parser = MultipartJpegParser(BOUNDARY, max_part_bytes=1000)
    big = JPEG_SOI + bytes(5000) + JPEG_EOI
    out = parser.feed(_part(big) + _part(big, length=None) + _part(JPEGS[0][:900] + JPEG_EOI))
    assert [p.jpeg for p in out] == [JPEGS[0][:900] + JPEG_EOI]
    assert parser.counters.corrupt == 2


def test_boundary_is_learned_when_the_server_does_not_declare_it() -> None:
    parser = MultipartJpegParser(None)
    assert [p.jpeg for p in parser.feed(b"junk\r\n" + _part(JPEGS[0]) + _part(JPEGS[1]))] == JPEGS[:2]


def test_chunked_decoder_handles_extensions_and_the_last_chunk() -> None:
    decoder = ChunkedDecoder()
    data = b"5;name=x\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    assert b"".join(decoder.feed(data[i : i + 1]) for i in range(len(data))) == b"hello world"
    assert decoder.finished
    with pytest.raises(StreamFormatError):
        ChunkedDecoder().feed(b"zz\r\n")
    with pytest.raises(StreamFormatError):
        ChunkedDecoder().feed(b"2\r\nabXY")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(min_value=0, max_value=3000), max_size=20))
def test_any_bytes_never_raise_and_never_yield_a_non_jpeg(noise: bytes, cuts: list[int]) -> None:
    stream = noise + _part(noise[:50]) + noise
    parser = MultipartJpegParser(BOUNDARY, max_part_bytes=2000)
    for jpeg in _feed_in_chunks(parser, stream, [c for c in cuts if c <= len(stream)]):
        assert jpeg.startswith(JPEG_SOI) and jpeg.endswith(JPEG_EOI)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=500), min_size=1, max_size=5),
    st.booleans(),
    st.booleans(),
    st.lists(st.integers(min_value=0, max_value=4000), max_size=30),
)
def test_valid_parts_at_any_chunking_are_all_recovered(
    bodies: list[bytes], with_length: bool, chunked: bool, cuts: list[int]
) -> None:
    jpegs = [JPEG_SOI + body + JPEG_EOI for body in bodies]
    pieces = [_part(j, length=-1 if with_length else None) for j in jpegs] + [b"\r\n--" + BOUNDARY + b"--\r\n"]
    body = b"".join(pieces)
    assume(body.count(b"--" + BOUNDARY) == len(pieces))
    stream = _chunked(pieces) if chunked else body
    decoder = ChunkedDecoder()
    parser = MultipartJpegParser(BOUNDARY)
    out: list[bytes] = []
    start = 0
    for cut in [*sorted({c for c in cuts if c <= len(stream)}), len(stream)]:
        data = stream[start:cut]
        out += [p.jpeg for p in parser.feed(decoder.feed(data) if chunked else data)]
        start = cut
    assert out == jpegs
    assert parser.counters.corrupt == 0


# -- newest_only: a backlog costs at most two parsed parts ------------------------------------------------------


def test_newest_only_jumps_over_a_backlog_without_parsing_it() -> None:
    broken = JPEG_SOI + bytes(100)  # not a JPEG end: parsed, it would count as corrupt
    stream = b"".join(_part(JPEGS[i % 3]) for i in range(40)) + _part(broken) + _part(JPEGS[0]) + _part(JPEGS[1])
    parser = MultipartJpegParser(BOUNDARY)
    parts = parser.feed(stream, newest_only=True)
    assert [p.jpeg for p in parts] == [JPEGS[0], JPEGS[1]]
    assert parser.counters.stale == 41 and parser.counters.corrupt == 0, "the stale broken part was not parsed"
    assert parser.counters.parts + parser.counters.stale == 43


def test_newest_only_keeps_a_part_that_is_still_arriving() -> None:
    stream = b"".join(_part(JPEGS[i % 3]) for i in range(10))
    tail = _part(JPEGS[2])
    parser = MultipartJpegParser(BOUNDARY)
    parts = parser.feed(stream + tail[:-50], newest_only=True)
    assert [p.jpeg for p in parts] == [JPEGS[0]]  # the 10th part; the 11th is incomplete
    assert [p.jpeg for p in parser.feed(tail[-50:], newest_only=True)] == [JPEGS[2]]
    assert parser.counters.stale == 9 and parser.counters.parts == 2


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=1, max_value=30),
    st.booleans(),
    st.booleans(),
    st.lists(st.integers(min_value=0, max_value=20_000), max_size=12),
)
def test_newest_only_at_any_chunking_ends_on_the_last_part_and_accounts_for_every_part(
    count: int, with_length: bool, chunked: bool, cuts: list[int]
) -> None:
    jpegs = [JPEGS[i % 3][:-2] + bytes([i]) + JPEG_EOI for i in range(count)]  # each part unique
    pieces = [_part(j, length=-1 if with_length else None) for j in jpegs] + [b"\r\n--" + BOUNDARY + b"--\r\n"]
    stream = _chunked(pieces) if chunked else b"".join(pieces)
    decoder = ChunkedDecoder()
    parser = MultipartJpegParser(BOUNDARY)
    out: list[bytes] = []
    start = 0
    for cut in [*sorted({c for c in cuts if c <= len(stream)}), len(stream)]:
        data = stream[start:cut]
        out += [p.jpeg for p in parser.feed(decoder.feed(data) if chunked else data, newest_only=True)]
        start = cut
    assert out and out[-1] == jpegs[-1], "the newest part is always delivered"
    assert out == sorted(out, key=jpegs.index), "parts come out in stream order"
    assert len(out) + parser.counters.stale == count and parser.counters.corrupt == 0


def test_chunked_decoder_output_is_the_same_at_any_cut() -> None:
    body = b"".join(_part(j) for j in JPEGS)
    stream = _chunked([body[i : i + 700] for i in range(0, len(body), 700)]) + b"0\r\n\r\n"
    for step in (1, 3, 36, 4096, len(stream)):
        decoder = ChunkedDecoder()
        assert b"".join(decoder.feed(stream[i : i + step]) for i in range(0, len(stream), step)) == body
        assert decoder.finished


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(min_value=0, max_value=6000), max_size=20))
def test_newest_only_on_any_bytes_never_raises_and_never_yields_a_non_jpeg(noise: bytes, cuts: list[int]) -> None:
    stream = noise + _part(noise[:50]) + noise + _part(JPEGS[0]) + noise
    parser = MultipartJpegParser(BOUNDARY, max_part_bytes=2000)
    start = 0
    for cut in [*sorted({c for c in cuts if c <= len(stream)}), len(stream)]:
        for part in parser.feed(stream[start:cut], newest_only=True):
            assert part.jpeg.startswith(JPEG_SOI) and part.jpeg.endswith(JPEG_EOI)
        start = cut

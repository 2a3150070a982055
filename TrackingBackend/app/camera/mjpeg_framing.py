"""Incremental parsers for an MJPEG-over-HTTP stream (pure: bytes in, JPEG parts out).

OpenIris serves its stream with esp_http_server, which always uses chunked transfer encoding: the
response is `HTTP/1.1 200 OK`, `Content-Type: multipart/x-mixed-replace;boundary=<b>`,
`Transfer-Encoding: chunked`, and every part is sent as `\\r\\n--<b>\\r\\n`, then
`Content-Type: image/jpeg`, `Content-Length: <n>`, `X-Timestamp: <sec>.<usec>`, a blank line and the JPEG.
Other MJPEG servers send the same multipart body without chunking and sometimes without Content-Length.

`ChunkedDecoder` undoes the transfer encoding; `MultipartJpegParser` cuts the multipart body into JPEG parts:
- With Content-Length a part is handed out as soon as its last byte arrives (no wait for the next boundary,
  which the camera only sends with its next frame). If the boundary shows up inside the announced length, the
  length was wrong: the part is dropped at once and parsing resumes at that boundary.
- Without Content-Length the part ends at the next boundary (one frame of extra latency, unavoidable).
- A part must start with `FF D8` and end with `FF D9` (a trailing CRLF inside the announced length is
  tolerated); a part or header block above its size limit is dropped and the parser resyncs on the boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

JPEG_SOI = b"\xff\xd8"
JPEG_EOI = b"\xff\xd9"
DEFAULT_MAX_PART_BYTES = 2 * 1024 * 1024
MAX_HEADER_BYTES = 8 * 1024
MAX_RESPONSE_HEAD_BYTES = 16 * 1024
_MAX_CHUNK_SIZE_LINE_BYTES = 1024
_MAX_BOUNDARY_LINE_BYTES = 256
_COMPACT_AFTER_BYTES = 256 * 1024


class StreamFormatError(ValueError):
    """The byte stream breaks the HTTP framing itself (not just one bad frame): the connection is unusable."""


@dataclass(frozen=True, slots=True)
class ResponseHead:
    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)  # names lower-cased

    @property
    def is_chunked(self) -> bool:
        return "chunked" in self.headers.get("transfer-encoding", "").lower()

    @property
    def boundary(self) -> bytes | None:
        """The multipart boundary from Content-Type, or None when the server did not name one."""
        for param in self.headers.get("content-type", "").split(";")[1:]:
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "boundary" and value.strip().strip('"'):
                return value.strip().strip('"').encode("latin-1")
        return None


def find_head_end(buffer: bytes | bytearray) -> int:
    """Index just past the blank line ending an HTTP head, or -1 when it has not all arrived."""
    end = buffer.find(b"\r\n\r\n")
    return -1 if end < 0 else end + 4


def parse_response_head(head: bytes) -> ResponseHead:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise StreamFormatError(f"not an HTTP response: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return ResponseHead(int(parts[1]), parts[2] if len(parts) > 2 else "", headers)


class ChunkedDecoder:
    """Undo `Transfer-Encoding: chunked`, incrementally.

    Chunk data is handed on as it arrives (joined once per feed); only a partial size line or CRLF is kept
    between feeds, so a large feed costs one copy plus a few steps per chunk.
    """

    def __init__(self) -> None:
        self.finished = False
        self._buffer = b""  # a partial chunk-size line or CRLF left from the previous feed
        self._remaining = 0  # data bytes left in the current chunk
        self._expect_crlf = False  # the CRLF after a chunk's data is pending

    def feed(self, data: bytes) -> bytes:
        buf = self._buffer + data if self._buffer else data
        view = memoryview(buf)
        size = len(buf)
        out: list[memoryview] = []
        pos = 0
        while not self.finished and pos < size:
            if self._remaining:
                take = min(self._remaining, size - pos)
                out.append(view[pos : pos + take])
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._expect_crlf = True
                continue
            if self._expect_crlf:
                if size - pos < 2:
                    break
                if buf[pos : pos + 2] != b"\r\n":
                    raise StreamFormatError("chunked stream: missing CRLF after chunk data")
                pos += 2
                self._expect_crlf = False
                continue
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                if size - pos > _MAX_CHUNK_SIZE_LINE_BYTES:
                    raise StreamFormatError("chunked stream: chunk size line too long")
                break
            size_field = buf[pos:line_end].split(b";", 1)[0].strip()
            try:
                chunk_size = int(size_field, 16)
            except ValueError as exc:
                raise StreamFormatError(f"chunked stream: bad chunk size {size_field[:20]!r}") from exc
            if chunk_size < 0:
                raise StreamFormatError("chunked stream: negative chunk size")
            pos = line_end + 2
            if chunk_size == 0:
                self.finished = True
            self._remaining = chunk_size
        self._buffer = bytes(buf[pos:]) if pos < size else b""
        decoded = b"".join(out)
        view.release()
        return decoded


@dataclass(frozen=True, slots=True)
class MjpegPart:
    jpeg: bytes
    device_ts_s: float | None  # X-Timestamp sent by the camera (its own clock), when present


@dataclass(slots=True)
class MultipartCounters:
    parts: int = 0  # JPEG parts handed out
    corrupt: int = 0  # parts dropped: wrong Content-Length, not a JPEG, too large, bad headers
    bytes_skipped: int = 0  # bytes outside handed-out parts that were not boundaries or headers
    stale: int = 0  # whole parts jumped over unparsed (newest_only) because a later complete part followed


class MultipartJpegParser:
    """Cut a multipart/x-mixed-replace body into JPEG parts; boundary None = learn it from the first `--` line."""

    def __init__(self, boundary: bytes | None, max_part_bytes: int = DEFAULT_MAX_PART_BYTES) -> None:
        self.counters = MultipartCounters()
        self.max_part_bytes = max_part_bytes
        self._delimiter: bytes | None = None
        if boundary:
            # Tolerate servers that put the leading dashes into the declared boundary.
            self._delimiter = boundary if boundary.startswith(b"--") else b"--" + boundary
        self._buffer = bytearray()
        self._pos = 0
        self._body_start = -1  # >= 0 while a part's body is pending
        self._content_length: int | None = None
        self._device_ts_s: float | None = None
        self._scanned_until = 0  # how far the pending body was searched for a delimiter

    def feed(self, data: bytes, *, newest_only: bool = False) -> list[MjpegPart]:
        """The parts completed by `data`. With `newest_only`, parts followed by a later complete part
        are jumped over without being parsed (counted in `counters.stale`): a reader that only wants
        the freshest frame then pays for at most two parts per feed, whatever the backlog."""
        self._buffer += data
        parts: list[MjpegPart] = []
        while True:
            if newest_only and self._body_start < 0:
                self._jump_to_last_parts()
            progressed, part = self._step()
            if part is not None:
                parts.append(part)
            if not progressed:
                break
        if self._pos >= _COMPACT_AFTER_BYTES or self._pos == len(self._buffer):
            self._shift(self._pos)
        return parts

    def _shift(self, count: int) -> None:
        del self._buffer[:count]
        self._pos -= count
        if self._body_start >= 0:
            self._body_start -= count
        self._scanned_until = max(0, self._scanned_until - count)

    def _jump_to_last_parts(self) -> None:
        """Between parts: move to the second-to-last delimiter. The part starting there is complete (the
        last delimiter follows it), so every part before it is stale; the last one may still be arriving."""
        delimiter = self._delimiter
        if delimiter is None:
            return
        buf = self._buffer
        last = buf.rfind(delimiter, self._pos)
        if last <= self._pos:
            return
        previous = buf.rfind(delimiter, self._pos, last)
        if previous <= self._pos:
            return
        self.counters.stale += buf.count(delimiter, self._pos, previous)
        self._pos = previous

    def _skip_to(self, new_pos: int) -> None:
        self.counters.bytes_skipped += max(0, new_pos - self._pos)
        self._pos = new_pos

    def _drop_part(self, resume_at: int) -> None:
        self.counters.corrupt += 1
        self._body_start = -1
        self._skip_to(resume_at)

    def _step(self) -> tuple[bool, MjpegPart | None]:
        """Advance the state machine once; (False, None) means more bytes are needed."""
        if self._body_start >= 0:
            return self._step_body()
        return self._step_boundary_and_headers(), None

    def _learn_delimiter(self) -> bool:
        """Take the first line starting with `--` as the delimiter; True when bytes were consumed or learned."""
        buf = self._buffer
        if buf[self._pos : self._pos + 2] == b"--":
            start = self._pos
        else:
            newline = buf.find(b"\n--", self._pos)
            if newline < 0:
                self._skip_to(max(self._pos, len(buf) - 2))
                return False
            start = newline + 1
        line_end = buf.find(b"\r\n", start)
        if line_end < 0:
            if len(buf) - start > _MAX_BOUNDARY_LINE_BYTES:
                self._skip_to(start + 1)
                return True
            return False
        candidate = bytes(buf[start:line_end]).strip()
        if len(candidate) <= 2:
            self._skip_to(line_end)
        else:
            self._delimiter = candidate
        return True

    def _step_boundary_and_headers(self) -> bool:
        if self._delimiter is None:
            return self._learn_delimiter()
        buf = self._buffer
        delim_pos = buf.find(self._delimiter, self._pos)
        if delim_pos < 0:
            self._skip_to(max(self._pos, len(buf) - len(self._delimiter) + 1))
            return False
        # Bytes between parts (the CRLF before a delimiter) are framing, not skipped data.
        if delim_pos - self._pos > 2:
            self._skip_to(delim_pos)
        self._pos = delim_pos
        line_end = buf.find(b"\r\n", delim_pos)
        if line_end < 0:
            if len(buf) - delim_pos > _MAX_BOUNDARY_LINE_BYTES:
                self._skip_to(delim_pos + 1)
                return True
            return False
        # The blank line may follow the boundary line directly (a part without headers).
        head_end = buf.find(b"\r\n\r\n", line_end)
        if head_end < 0:
            if len(buf) - line_end > MAX_HEADER_BYTES:
                self._drop_part(line_end)
                return True
            return False
        if head_end - line_end > MAX_HEADER_BYTES:
            self._drop_part(line_end)
            return True
        self._content_length, self._device_ts_s = _parse_part_headers(bytes(buf[line_end + 2 : head_end]))
        self._body_start = head_end + 4
        self._scanned_until = self._body_start
        self._pos = self._body_start
        if self._content_length is not None and self._content_length > self.max_part_bytes:
            self._drop_part(self._body_start)
        return True

    def _step_body(self) -> tuple[bool, MjpegPart | None]:
        assert self._delimiter is not None
        buf = self._buffer
        start = self._body_start
        length = self._content_length
        available_end = len(buf) if length is None else min(len(buf), start + length)
        if available_end - start >= 2 and buf[start : start + 2] != JPEG_SOI:
            self._drop_part(start)
            return True, None
        search_from = max(start, self._scanned_until)
        delim_pos = buf.find(self._delimiter, search_from, available_end)
        if delim_pos < 0:
            self._scanned_until = max(start, available_end - len(self._delimiter) + 1)
        if length is not None:
            if delim_pos >= 0:
                # The next part began before the announced length was reached.
                self._drop_part(delim_pos)
                return True, None
            if len(buf) < start + length:
                return False, None
            payload = bytes(buf[start : start + length])
            end = start + length
        else:
            if delim_pos < 0:
                if len(buf) - start > self.max_part_bytes:
                    self._drop_part(max(start, len(buf) - len(self._delimiter) + 1))
                    return True, None
                return False, None
            payload = bytes(buf[start:delim_pos])
            end = delim_pos
        payload = payload if payload.endswith(JPEG_EOI) else payload.rstrip(b"\r\n")
        self._body_start = -1
        self._pos = end
        too_big = len(payload) > self.max_part_bytes
        if too_big or not payload.endswith(JPEG_EOI) or not payload.startswith(JPEG_SOI):
            self.counters.corrupt += 1
            if length is not None:
                self._pos = start
            return True, None
        self.counters.parts += 1
        return True, MjpegPart(payload, self._device_ts_s)


def _parse_part_headers(block: bytes) -> tuple[int | None, float | None]:
    content_length: int | None = None
    device_ts_s: float | None = None
    for line in block.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        key = name.strip().lower()
        if key == "content-length":
            try:
                content_length = int(value.strip())
            except ValueError:
                content_length = None  # fall back to scanning for the boundary
            if content_length is not None and content_length < 0:
                content_length = None
        elif key == "x-timestamp":
            try:
                device_ts_s = float(value.strip())
            except ValueError:
                device_ts_s = None
    return content_length, device_ts_s

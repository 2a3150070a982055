"""Incremental parser for the OpenIris USB-serial frame stream (pure: bytes in, JPEG payloads out).

Wire format (older OpenIris firmware): packets `FF A0 FF A1 <len: u16 little-endian> <len bytes of JPEG>`,
back to back; firmware log lines (plain text) can sit between packets.

Rules the parser applies, so a noisy line never yields anything but a complete JPEG:
- Anything before the magic is skipped (text, garbage, the tail of a packet we joined mid-way).
- A length below `MIN_JPEG_BYTES` is rejected at once: no real JPEG is that small (the headers alone of a
  baseline JPEG with its Huffman tables are ~300 bytes). The u16 field caps lengths at 65,535 bytes.
- A payload must start with the SOI marker `FF D8` (checked as soon as two bytes are there) and end with
  the EOI marker `FF D9`.
- A truncated packet (the camera reset or the OS dropped bytes) would otherwise swallow the packets after
  it until its claimed length is reached. So when the magic followed by a plausible header and an SOI shows
  up inside a pending payload, the pending packet is rejected and parsing resumes at that magic. (JPEG
  entropy data never holds `FF A0`; header tables would need the quantisation values 255, 160, 255, 161.)
- After a rejection the scan resumes one byte after the rejected magic, so a bogus length field never
  hides the good packets behind it.
- The buffer is bounded: at most one pending packet (6 + 65,535 bytes) plus the last feed.
"""

from __future__ import annotations

from dataclasses import dataclass

MAGIC = b"\xff\xa0\xff\xa1"
HEADER_BYTES = len(MAGIC) + 2
MIN_JPEG_BYTES = 100
MAX_JPEG_BYTES = 0xFFFF
JPEG_SOI = b"\xff\xd8"
JPEG_EOI = b"\xff\xd9"
# Compacting the buffer on every packet would copy it once per packet; do it when the consumed prefix is big.
_COMPACT_AFTER_BYTES = 64 * 1024


@dataclass(slots=True)
class SerialFramingCounters:
    packets: int = 0  # complete JPEG payloads handed out
    rejected: int = 0  # packet headers whose length or payload was not a plausible JPEG
    bytes_skipped: int = 0  # bytes discarded outside accepted packets (text, garbage, rejected packets)


class OpenIrisFrameParser:
    """Feed raw serial bytes in any chunking; get the JPEG payloads that completed, oldest first."""

    def __init__(self) -> None:
        self.counters = SerialFramingCounters()
        self._buffer = bytearray()
        self._pos = 0  # start of the unconsumed bytes in _buffer
        # While a packet is pending: how far into the buffer the truncation check has already looked.
        self._scanned_until = 0

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer) - self._pos

    def reset(self) -> None:
        """Forget buffered bytes (after a reconnect); counters are kept."""
        self._buffer.clear()
        self._pos = 0
        self._scanned_until = 0

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        payloads: list[bytes] = []
        while True:
            payload = self._next_packet()
            if payload is None:
                break
            payloads.append(payload)
        self._compact()
        return payloads

    def _skip_to(self, new_pos: int) -> None:
        self.counters.bytes_skipped += new_pos - self._pos
        self._pos = new_pos
        self._scanned_until = 0

    def _reject_at(self, magic_pos: int) -> None:
        self.counters.rejected += 1
        self._skip_to(magic_pos + 1)

    def _next_packet(self) -> bytes | None:
        buf = self._buffer
        while True:
            magic_pos = buf.find(MAGIC, self._pos)
            if magic_pos < 0:
                # Keep a possible partial magic at the end; everything before it is noise.
                self._skip_to(max(self._pos, len(buf) - (len(MAGIC) - 1)))
                return None
            if magic_pos > self._pos:
                self._skip_to(magic_pos)
            if len(buf) - magic_pos < HEADER_BYTES:
                return None
            length = int.from_bytes(buf[magic_pos + 4 : magic_pos + 6], "little")
            if length < MIN_JPEG_BYTES:
                self._reject_at(magic_pos)
                continue
            start = magic_pos + HEADER_BYTES
            end = start + length
            available = min(len(buf), end)
            if available - start >= 2 and buf[start : start + 2] != JPEG_SOI:
                self._reject_at(magic_pos)
                continue
            next_magic = self._find_next_header(start, available)
            if next_magic >= 0:
                # A new packet starts inside this one: this one was truncated.
                self._reject_at(magic_pos)
                self._skip_to(next_magic)
                continue
            if len(buf) < end:
                return None
            if buf[end - 2 : end] != JPEG_EOI:
                self._reject_at(magic_pos)
                continue
            payload = bytes(buf[start:end])
            self._pos = end
            self._scanned_until = 0
            self.counters.packets += 1
            return payload

    def _find_next_header(self, start: int, available: int) -> int:
        """Position of a plausible packet header inside [start, available), or -1."""
        buf = self._buffer
        search_from = max(start, self._scanned_until)
        while True:
            pos = buf.find(MAGIC, search_from, available)
            if pos < 0:
                # The last bytes may hold a magic whose header is not complete yet; look at them again.
                self._scanned_until = max(start, available - (HEADER_BYTES + len(JPEG_SOI)) + 1)
                return -1
            if pos + HEADER_BYTES + len(JPEG_SOI) > available:
                self._scanned_until = pos
                return -1
            length = int.from_bytes(buf[pos + 4 : pos + 6], "little")
            soi = buf[pos + HEADER_BYTES : pos + HEADER_BYTES + 2]
            if length >= MIN_JPEG_BYTES and soi == JPEG_SOI:
                return pos
            search_from = pos + 1

    def _compact(self) -> None:
        if self._pos >= _COMPACT_AFTER_BYTES or self._pos == len(self._buffer):
            del self._buffer[: self._pos]
            if self._scanned_until:
                self._scanned_until -= self._pos
            self._pos = 0


def keep_newest(payloads: list[bytes]) -> tuple[bytes | None, int]:
    """The newest payload and how many older ones were dropped (a stale backlog is worth nothing for gaze)."""
    if not payloads:
        return None, 0
    return payloads[-1], len(payloads) - 1


def encode_packet(jpeg: bytes) -> bytes:
    """One packet as the firmware sends it (used by tests, fakes and tools)."""
    if len(jpeg) > MAX_JPEG_BYTES:
        raise ValueError(f"JPEG of {len(jpeg)} bytes does not fit the u16 length field")
    return MAGIC + len(jpeg).to_bytes(2, "little") + jpeg

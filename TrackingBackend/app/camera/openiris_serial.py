"""OpenIris over USB serial (older firmware): JPEG packets framed by `OpenIrisFrameParser`.

`read` takes everything the port holds, parses it, decodes only the newest complete JPEG and counts the older
ones in `dropped_stale`, so a backlog in the OS buffer never delays gaze. A port that vanishes (unplugged,
pty closed) or stays silent for `stall_timeout_s` raises SourceError and the caller reopens it.
Counters: every packet header seen counts as `received`; it is then `decoded`, `corrupt` (rejected by the
framing or not decodable) or `dropped_stale`.
"""

from __future__ import annotations

import select
import sys
import time

import serial

from app.camera.base import CapturedFrame, SourceCounters, SourceError
from app.camera.jpeg import decode_gray
from app.camera.serial_framing import OpenIrisFrameParser

DEFAULT_BAUD = 3_000_000
# The CDC driver on macOS does not take 3 Mbaud; the firmware's USB CDC link ignores the rate anyway.
DEFAULT_BAUD_MACOS = 115_200
READ_POLL_S = 0.02
# One read takes at most this much from the port before handing out a frame.
MAX_DRAIN_BYTES = 1024 * 1024
# Linux hands tty input to readers at most 4095 bytes at a time and reports 0 waiting bytes until its worker
# passes on the next piece; a read that size means more is probably queued behind it.
TTY_HANDOFF_BYTES = 4095
TTY_HANDOFF_WAIT_S = 0.002
# Windows' default driver buffer (4 KiB) overflows within one frame at 3 Mbaud.
WINDOWS_RX_BUFFER_BYTES = 64 * 1024


def default_baud(platform: str = sys.platform) -> int:
    return DEFAULT_BAUD_MACOS if platform == "darwin" else DEFAULT_BAUD


class OpenIrisSerialSource:
    """Frames from an OpenIris camera on a serial port such as `COM3` or `/dev/ttyACM0` (FrameSource)."""

    def __init__(self, port: str, baud: int = 0, *, stall_timeout_s: float = 3.0) -> None:
        self.port = port
        self.baud = baud if baud > 0 else default_baud()
        self.stall_timeout_s = stall_timeout_s
        self.counters = SourceCounters()
        self.waits_for_reader = False  # a camera keeps its own time
        self.dropped_stale = 0  # complete frames skipped because a newer one was already there
        self.parser = OpenIrisFrameParser()
        self._serial: serial.Serial | None = None
        self._rejected_seen = 0
        self._last_rx_ts = 0.0

    def open(self) -> None:
        self.close()
        try:
            # No DTR/RTS handshake: on some ESP32 boards those lines reset the chip.
            conn = serial.Serial(
                port=self.port,
                baudrate=self.baud,
                timeout=READ_POLL_S,
                xonxoff=False,
                rtscts=False,
                dsrdtr=False,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise SourceError(f"cannot open serial port {self.port} at {self.baud} baud: {exc}") from exc
        try:
            if sys.platform == "win32":
                conn.set_buffer_size(rx_size=WINDOWS_RX_BUFFER_BYTES)
            conn.reset_input_buffer()  # whatever queued up before we opened is stale
        except (serial.SerialException, OSError) as exc:
            conn.close()
            raise SourceError(f"serial port {self.port} failed right after opening: {exc}") from exc
        self._serial = conn
        self.parser.reset()
        self._last_rx_ts = time.monotonic()

    def _take_available(self, conn: serial.Serial) -> bytes:
        """What the port holds now, or what arrives within READ_POLL_S; SourceError when the port is gone."""
        try:
            chunk = bytes(conn.read(max(1, conn.in_waiting)))
            data = chunk
            while data and len(data) < MAX_DRAIN_BYTES:
                waiting = conn.in_waiting
                if not waiting and len(chunk) >= TTY_HANDOFF_BYTES and self._more_is_coming(conn):
                    waiting = max(1, conn.in_waiting)
                if not waiting:
                    break
                chunk = bytes(conn.read(waiting))
                data += chunk
        except (serial.SerialException, OSError) as exc:
            raise SourceError(f"serial port {self.port} lost: {exc}") from exc
        return data

    @staticmethod
    def _more_is_coming(conn: serial.Serial) -> bool:
        """After a full tty hand-off, wait briefly for the kernel to pass on the next one (POSIX only)."""
        try:
            readable, _, _ = select.select([conn.fileno()], [], [], TTY_HANDOFF_WAIT_S)
        except (AttributeError, NotImplementedError, ValueError, OSError):
            return False  # no selectable descriptor (Windows): its driver reports the whole buffer anyway
        return bool(readable)

    def read(self, timeout_s: float) -> CapturedFrame | None:
        conn = self._serial
        if conn is None:
            raise SourceError(f"serial port {self.port} is not open")
        deadline = time.monotonic() + timeout_s
        while True:
            data = self._take_available(conn)
            now = time.monotonic()
            if data:
                self._last_rx_ts = now
                frame = self._decode_newest(self.parser.feed(data), now)
                if frame is not None:
                    return frame
            elif now - self._last_rx_ts > self.stall_timeout_s:
                raise SourceError(f"serial port {self.port} stalled: no data for {self.stall_timeout_s:g} s")
            if now >= deadline:
                return None

    def _decode_newest(self, payloads: list[bytes], rx_ts: float) -> CapturedFrame | None:
        rejected = self.parser.counters.rejected - self._rejected_seen
        self._rejected_seen = self.parser.counters.rejected
        self.counters.received += len(payloads) + rejected
        self.counters.corrupt += rejected
        for index in range(len(payloads) - 1, -1, -1):
            gray = decode_gray(payloads[index])
            if gray is None:
                self.counters.corrupt += 1
                continue
            self.counters.decoded += 1
            self.dropped_stale += index
            return CapturedFrame(gray=gray, capture_ts=rx_ts)
        return None

    def close(self) -> None:
        if self._serial is not None:
            try:
                self._serial.close()
            except (serial.SerialException, OSError):
                pass  # the device is already gone; nothing left to release
            finally:
                self._serial = None

    def __repr__(self) -> str:
        return f"OpenIrisSerialSource({self.port!r}, baud={self.baud})"

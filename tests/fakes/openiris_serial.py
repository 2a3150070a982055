"""A fake OpenIris USB-serial camera: packets written into a pseudo-terminal, well-behaved or noisy.

`camera.port` is the pty's slave path (`/dev/pts/N`), a valid capture_source that pyserial opens like a
real port. POSIX only (os.openpty).

    with FakeOpenIrisSerialCamera(make_jpegs(10), fps=60, faults=SerialFaults(text_every=2)) as camera:
        source = OpenIrisSerialSource(camera.port)

`unplug()` closes the master side, which is what a reader sees when the device disappears.
"""

from __future__ import annotations

import os
import select
import threading
import time
import tty
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType

from app.camera.serial_framing import MAGIC, encode_packet


@dataclass(frozen=True, slots=True)
class SerialFaults:
    text_every: int = 0  # a firmware log line before every Nth packet
    garbage_every: int = 0  # random bytes (never the magic) before every Nth packet
    truncate_every: int = 0  # every Nth packet is cut to half its length
    huge_length_every: int = 0  # a bogus header claiming 65,000 bytes before every Nth packet
    stall_after_frames: int | None = None  # stop writing after this many packets (the pty stays open)


class FakeOpenIrisSerialCamera:
    """Write `frames` (a sequence, cycled, or a callable index -> JPEG) as packets at `fps` (0 = flat out)."""

    def __init__(
        self,
        frames: Iterable[bytes] | Callable[[int], bytes],
        fps: float = 60.0,
        *,
        faults: SerialFaults | None = None,
        seed: int = 0,
    ) -> None:
        self._frames: Sequence[bytes] | Callable[[int], bytes] = (
            frames if callable(frames) or isinstance(frames, Sequence) else list(frames)
        )
        self.fps = fps
        self.faults = faults or SerialFaults()
        self.frames_sent = 0
        self.bytes_sent = 0
        self._rng_state = seed or 0x9E3779B9
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._master_fd, self._slave_fd = os.openpty()
        # Raw mode at once: a cooked line discipline would echo our bytes back and fill the master's buffer.
        tty.setraw(self._slave_fd)
        # Non-blocking writes: a full pty buffer (nobody reading) must never wedge stop().
        os.set_blocking(self._master_fd, False)
        self.port = os.ttyname(self._slave_fd)
        self._closed = False

    def start(self) -> FakeOpenIrisSerialCamera:
        self._thread = threading.Thread(target=self._run, name="fake-openiris-serial", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        self.unplug()

    def unplug(self) -> None:
        """Close both ends of the pty, as when the USB device goes away."""
        if not self._closed:
            self._closed = True
            self._stop.set()
            if self._thread is not None and self._thread is not threading.current_thread():
                self._thread.join(timeout=2.0)
            os.close(self._master_fd)
            os.close(self._slave_fd)

    def __enter__(self) -> FakeOpenIrisSerialCamera:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def frame(self, index: int) -> bytes:
        if callable(self._frames):
            return self._frames(index)
        return self._frames[index % len(self._frames)]

    def _random_bytes(self, count: int) -> bytes:
        out = bytearray()
        for _ in range(count):
            self._rng_state = (self._rng_state * 1103515245 + 12345) & 0x7FFFFFFF
            out.append((self._rng_state >> 16) & 0xFF)
        return bytes(out).replace(MAGIC, b"")

    def packet_bytes(self, index: int) -> bytes:
        """What goes on the wire for frame `index`, faults included."""
        faults = self.faults
        out = b""
        if faults.text_every and index % faults.text_every == 0:
            out += f"[{index:6d}][I][CameraManager] frame {index} sent over serial\r\n".encode()
        if faults.garbage_every and index % faults.garbage_every == 0:
            out += self._random_bytes(37)
        if faults.huge_length_every and index % faults.huge_length_every == 0:
            out += MAGIC + (65000).to_bytes(2, "little") + b"\xff\xd8\xff\xe0" + self._random_bytes(64)
        packet = encode_packet(self.frame(index))
        if faults.truncate_every and index % faults.truncate_every == faults.truncate_every - 1:
            packet = packet[: len(packet) // 2]
        return out + packet

    def _write_all(self, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            if self._stop.is_set():
                return False
            _, writable, _ = select.select([], [self._master_fd], [], 0.05)
            if not writable:
                continue
            try:
                written = os.write(self._master_fd, view)
            except BlockingIOError:
                continue
            except OSError:
                return False
            view = view[written:]
            self.bytes_sent += written
        return True

    def _run(self) -> None:
        next_due = time.monotonic()
        index = 0
        while not self._stop.is_set():
            stall_after = self.faults.stall_after_frames
            if stall_after is not None and index >= stall_after:
                self._stop.wait(0.05)
                continue
            if self.fps > 0:
                delay = next_due - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
                next_due = max(next_due + 1.0 / self.fps, time.monotonic() - 1.0 / self.fps)
            if not self._write_all(self.packet_bytes(index)):
                return
            index += 1
            self.frames_sent = index

"""Camera -> tracker frame transport: pixels in a shared-memory ring, tiny records through a pipe.

The main process creates the ring (and unlinks it on stop), so a killed camera or tracker process can
never leak a segment; a restarted one attaches to the same ring and pipe. Only (slot, sequence,
capture timestamp, shape) crosses the pipe. The reader always takes the newest record and never works
through a backlog; a frame overwritten while being copied is detected by its sequence and dropped.

Pipes rather than `multiprocessing.Queue`: a queue's internal lock stays held forever when a process is
killed while waiting on it, which deadlocks the restarted process. A pipe end has no lock.
"""

from __future__ import annotations

import contextlib
import os
import struct
from dataclasses import dataclass
from multiprocessing import shared_memory
from multiprocessing.connection import Connection
from typing import Protocol

import numpy as np
import numpy.typing as npt

RECORD = struct.Struct("<IqdIII")  # slot, sequence, capture_ts, height, width, channels
SLOT_HEADER = struct.Struct("<qIII")  # sequence (-1 while writing), height, width, channels
SLOT_HEADER_BYTES = 64  # keep pixel data cache-line aligned
DEFAULT_SLOTS = 4
MAX_RECORDS_DRAINED = 64
DEFAULT_MAX_FRAME_BYTES = 1280 * 960  # a gray frame up to 1280x960


@dataclass(frozen=True, slots=True)
class FrameRecord:
    slot: int
    sequence: int
    capture_ts: float
    height: int
    width: int
    channels: int

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.height, self.width) if self.channels == 1 else (self.height, self.width, self.channels)


def make_nonblocking(conn: Connection) -> None:
    """A writer must never block on a dead reader: on POSIX a full pipe then refuses the write
    (atomic for records under PIPE_BUF) and the frame is counted as dropped."""
    if os.name == "posix":
        os.set_blocking(conn.fileno(), False)


class FrameStore(Protocol):
    """Where slot pixels live: shared memory in production, a plain buffer in loop tests."""

    slots: int
    max_frame_bytes: int

    def slot_view(self, slot: int) -> memoryview: ...


class SharedFrameStore:
    """A ring of `slots` pre-allocated frame slots in one shared-memory segment."""

    def __init__(
        self,
        name: str | None = None,
        slots: int = DEFAULT_SLOTS,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        create: bool = False,
    ) -> None:
        self.slots = slots
        self.max_frame_bytes = max_frame_bytes
        self._slot_bytes = SLOT_HEADER_BYTES + max_frame_bytes
        size = self._slot_bytes * slots
        self._shm = shared_memory.SharedMemory(name=name, create=create, size=size if create else 0)
        self.name = self._shm.name
        self._owner = create
        buffer = self._shm.buf
        assert buffer is not None
        self._buffer: memoryview = buffer
        if create:
            for slot in range(slots):
                SLOT_HEADER.pack_into(self._buffer, slot * self._slot_bytes, -1, 0, 0, 0)

    def slot_view(self, slot: int) -> memoryview:
        start = slot * self._slot_bytes
        return self._buffer[start : start + self._slot_bytes]

    def close(self) -> None:
        # Views into the buffer must be gone before close; callers drop theirs first.
        with contextlib.suppress(BufferError):
            self._buffer.release()
            self._shm.close()
        if self._owner:
            with contextlib.suppress(FileNotFoundError):
                self._shm.unlink()


class MemoryFrameStore:
    """The in-memory twin of SharedFrameStore, for loop tests that need no shared memory."""

    def __init__(self, slots: int = DEFAULT_SLOTS, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.slots = slots
        self.max_frame_bytes = max_frame_bytes
        self._slot_bytes = SLOT_HEADER_BYTES + max_frame_bytes
        self._buffer = memoryview(bytearray(self._slot_bytes * slots))
        for slot in range(slots):
            SLOT_HEADER.pack_into(self._buffer, slot * self._slot_bytes, -1, 0, 0, 0)

    def slot_view(self, slot: int) -> memoryview:
        start = slot * self._slot_bytes
        return self._buffer[start : start + self._slot_bytes]

    def close(self) -> None:
        self._buffer.release()


class FrameTooLargeError(ValueError):
    pass


class FrameWriter:
    """Camera side: copies a frame into the next slot and announces it."""

    def __init__(self, store: FrameStore, conn: Connection, start_sequence: int = 0) -> None:
        self._store = store
        self._conn = conn
        self._next_slot = 0
        self.sequence = start_sequence
        self.dropped = 0  # records the pipe refused (reader gone or far behind)
        make_nonblocking(conn)

    def write(self, image: npt.NDArray[np.uint8], capture_ts: float) -> int:
        """Copy a gray (H x W) or colour (H x W x C) uint8 image into the next slot and announce it."""
        height, width = image.shape[:2]
        channels = image.shape[2] if image.ndim == 3 else 1
        nbytes = height * width * channels
        if nbytes > self._store.max_frame_bytes:
            raise FrameTooLargeError(f"frame {width}x{height}x{channels} exceeds the ring slot size")
        slot = self._next_slot
        self._next_slot = (slot + 1) % self._store.slots
        self.sequence += 1
        view = self._store.slot_view(slot)
        SLOT_HEADER.pack_into(view, 0, -1, height, width, channels)
        pixels = np.frombuffer(view, dtype=np.uint8, count=nbytes, offset=SLOT_HEADER_BYTES)
        pixels[:] = image.reshape(-1) if image.flags.c_contiguous else np.ascontiguousarray(image).reshape(-1)
        SLOT_HEADER.pack_into(view, 0, self.sequence, height, width, channels)
        del pixels, view
        try:
            self._conn.send_bytes(RECORD.pack(slot, self.sequence, capture_ts, height, width, channels))
        except BlockingIOError:
            self.dropped += 1
        return self.sequence


class FrameReader:
    """Tracker side: waits for records, skips to the newest, copies its pixels out of the ring."""

    def __init__(self, store: FrameStore, conn: Connection) -> None:
        self._store = store
        self._conn = conn
        self._buffer = np.empty(store.max_frame_bytes, dtype=np.uint8)
        self.skipped = 0  # records passed over because a newer one was already waiting
        self.torn = 0  # frames overwritten while being read (the reader was too slow)

    def read_newest(self, timeout_s: float) -> tuple[FrameRecord, npt.NDArray[np.uint8]] | None:
        """The newest frame, or None when nothing arrived within `timeout_s`.

        The returned image is a view into this reader's own buffer, valid until the next call.
        """
        if not self._conn.poll(timeout_s):
            return None
        raw = self._conn.recv_bytes()
        # Bounded: a writer faster than this loop must not keep the reader draining forever.
        for _ in range(MAX_RECORDS_DRAINED):
            if not self._conn.poll(0):
                break
            raw = self._conn.recv_bytes()
            self.skipped += 1
        record = FrameRecord(*RECORD.unpack(raw))
        nbytes = record.height * record.width * record.channels
        view = self._store.slot_view(record.slot)
        before = SLOT_HEADER.unpack_from(view, 0)[0]
        out = self._buffer[:nbytes]
        out[:] = np.frombuffer(view, dtype=np.uint8, count=nbytes, offset=SLOT_HEADER_BYTES)
        after = SLOT_HEADER.unpack_from(view, 0)[0]
        del view
        if before != record.sequence or after != record.sequence:
            self.torn += 1
            return None
        return record, out.reshape(record.shape)

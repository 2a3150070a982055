"""Camera -> tracker frame transport: pixels in a shared-memory ring, tiny records through a pipe.

The main process creates the ring (and unlinks it on stop), so a killed camera or tracker process can
never leak a segment; a restarted one attaches to the same ring and pipe. Only (slot, sequence,
capture timestamp, shape) crosses the pipe. The reader always takes the newest record and never works
through a backlog:
- On POSIX every record is one atomic 36-byte pipe write (the Connection wire format: a 4-byte length,
  then the record), so the reader drains everything pending with one `os.read` and keeps the last
  record: a constant number of system calls per frame, whatever the backlog. On Windows (message-mode
  PipeConnection) it drains with the Connection API, bounded.
- Triple-buffer style, the reader announces in the segment's control block the slot it is copying and
  the writer skips that slot, so a writer that laps the ring does not overwrite the frame being read.
- A seqlock stays as the safety net (the writer marks a slot -1 while writing it): a frame that changed
  while being copied is counted as torn and the reader takes the next newest one within its timeout.
- The reader also notes in the control block the sequence it last took. A source with no clock of its own
  (the virtual eye unthrottled, a video file unpaced) waits for it before making the next frame
  (`FrameWriter.wait_taken`): it makes no frame only to be skipped, and leaves the CPU to the tracker.

Pipes rather than `multiprocessing.Queue`: a queue's internal lock stays held forever when a process is
killed while waiting on it, which deadlocks the restarted process. A pipe end has no lock.

The main process only creates and removes rings; numpy is imported where pixels are touched (the workers), which
keeps it out of the main process (about 20 MB of memory, 0.17 s of start-up).
"""

from __future__ import annotations

import contextlib
import os
import select
import struct
import time
from dataclasses import dataclass
from multiprocessing import shared_memory
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

RECORD = struct.Struct("<IqdIII")  # slot, sequence, capture_ts, height, width, channels
# Connection.send_bytes frames a message with its length as a 4-byte big-endian prefix; records written
# with os.write keep that format so either end may use the Connection API.
RECORD_PREFIX = struct.pack("!i", RECORD.size)
WIRE_RECORD_BYTES = len(RECORD_PREFIX) + RECORD.size
# One read takes a whole default (64 KiB) Linux pipe of records; a multiple of the record size keeps
# reads aligned on records.
DRAIN_READ_BYTES = (65536 // WIRE_RECORD_BYTES) * WIRE_RECORD_BYTES
SLOT_HEADER = struct.Struct("<qIII")  # sequence (-1 while writing), height, width, channels
SLOT_HEADER_BYTES = 64  # keep pixel data cache-line aligned
CONTROL = struct.Struct("<q")  # the slot the reader is copying, -1 when none
TAKEN = struct.Struct("<q")  # the sequence of the frame the reader last took, right after CONTROL
TAKEN_OFFSET = CONTROL.size
# A writer waiting for the reader looks this often: a few looks per frame at the fastest tracker's rate.
TAKEN_POLL_S = 0.0002
CONTROL_BYTES = 64
NO_SLOT = -1
DEFAULT_SLOTS = 4
MAX_RECORDS_DRAINED = 64  # Windows only: records drained one by one per read
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
    """Where slot pixels live: shared memory in production, a plain buffer in loop tests.

    Layout: a control block (CONTROL_BYTES), then `slots` slots of SLOT_HEADER_BYTES + max_frame_bytes.
    """

    slots: int
    max_frame_bytes: int

    @property
    def buffer(self) -> memoryview: ...

    def slot_offset(self, slot: int) -> int: ...

    def pixels(self, slot: int) -> npt.NDArray[np.uint8]: ...


def ring_bytes(slots: int, max_frame_bytes: int) -> int:
    return CONTROL_BYTES + slots * (SLOT_HEADER_BYTES + max_frame_bytes)


class _RingLayout:
    """Offsets and cached pixel views over one ring buffer (views made once: numpy views cost ~1 µs each)."""

    def __init__(self, buffer: memoryview, slots: int, max_frame_bytes: int, initialise: bool) -> None:
        self.slots = slots
        self.max_frame_bytes = max_frame_bytes
        self._slot_bytes = SLOT_HEADER_BYTES + max_frame_bytes
        self._buffer: memoryview = buffer
        self._pixels: list[npt.NDArray[np.uint8]] | None = None  # made on first use (see the module's notes)
        if initialise:
            CONTROL.pack_into(buffer, 0, NO_SLOT)
            TAKEN.pack_into(buffer, TAKEN_OFFSET, 0)
            for slot in range(slots):
                SLOT_HEADER.pack_into(buffer, self.slot_offset(slot), -1, 0, 0, 0)

    @property
    def buffer(self) -> memoryview:
        return self._buffer

    def slot_offset(self, slot: int) -> int:
        return CONTROL_BYTES + slot * self._slot_bytes

    def pixels(self, slot: int) -> npt.NDArray[np.uint8]:
        views = self._pixels
        if views is None:
            import numpy as np

            offsets = [self.slot_offset(index) + SLOT_HEADER_BYTES for index in range(self.slots)]
            views = self._pixels = [
                np.frombuffer(self._buffer, dtype=np.uint8, count=self.max_frame_bytes, offset=offset)
                for offset in offsets
            ]
        return views[slot]

    def _drop_views(self) -> None:
        self._pixels = None


class SharedFrameStore(_RingLayout):
    """A ring of `slots` pre-allocated frame slots in one shared-memory segment."""

    def __init__(
        self,
        name: str | None = None,
        slots: int = DEFAULT_SLOTS,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        create: bool = False,
    ) -> None:
        size = ring_bytes(slots, max_frame_bytes)
        self._shm = shared_memory.SharedMemory(name=name, create=create, size=size if create else 0)
        self.name = self._shm.name
        self._owner = create
        buffer = self._shm.buf
        assert buffer is not None
        super().__init__(buffer, slots, max_frame_bytes, initialise=create)

    def __del__(self) -> None:
        # A store dropped without close(): the cached views must go before SharedMemory's own cleanup.
        self._drop_views()

    def close(self) -> None:
        self._drop_views()
        # Views into the buffer must be gone before close; callers drop theirs first.
        with contextlib.suppress(BufferError):
            self._buffer.release()
            self._shm.close()
        if self._owner:
            with contextlib.suppress(FileNotFoundError):
                self._shm.unlink()


class MemoryFrameStore(_RingLayout):
    """The in-memory twin of SharedFrameStore, for loop tests that need no shared memory."""

    def __init__(self, slots: int = DEFAULT_SLOTS, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        super().__init__(memoryview(bytearray(ring_bytes(slots, max_frame_bytes))), slots, max_frame_bytes, True)

    def close(self) -> None:
        self._drop_views()
        with contextlib.suppress(BufferError):
            self._buffer.release()


class FrameTooLargeError(ValueError):
    pass


class FrameWriter:
    """Camera side: copies a frame into the next free slot and announces it."""

    def __init__(self, store: FrameStore, conn: Connection, start_sequence: int = 0) -> None:
        self._store = store
        self._conn = conn
        self._fd = conn.fileno() if os.name == "posix" else -1
        self._next_slot = 0
        self.sequence = start_sequence
        self.dropped = 0  # records the pipe refused (reader gone or far behind)
        self.held_skips = 0  # times the next slot was the one the reader was copying, so it was skipped
        self.unwaited = 0  # waits for the reader that timed out (no reader, or a stuck one)
        make_nonblocking(conn)
        # A restarted writer counts from start_sequence again: the reader's last take is from before.
        TAKEN.pack_into(store.buffer, TAKEN_OFFSET, start_sequence)

    def write(self, image: npt.NDArray[np.uint8], capture_ts: float) -> int:
        """Copy a gray (H x W) or colour (H x W x C) uint8 image into the next slot and announce it."""
        store = self._store
        height, width = image.shape[:2]
        channels = image.shape[2] if image.ndim == 3 else 1
        nbytes = height * width * channels
        if nbytes > store.max_frame_bytes:
            raise FrameTooLargeError(f"frame {width}x{height}x{channels} exceeds the ring slot size")
        buffer = store.buffer
        slot = self._next_slot
        if slot == CONTROL.unpack_from(buffer, 0)[0] and store.slots > 1:
            slot = (slot + 1) % store.slots
            self.held_skips += 1
        self._next_slot = (slot + 1) % store.slots
        self.sequence += 1
        header_at = store.slot_offset(slot)
        SLOT_HEADER.pack_into(buffer, header_at, -1, height, width, channels)
        flat = image.reshape(-1)  # a view, or a C-order copy of an image that is not contiguous
        store.pixels(slot)[:nbytes] = flat
        SLOT_HEADER.pack_into(buffer, header_at, self.sequence, height, width, channels)
        record = RECORD.pack(slot, self.sequence, capture_ts, height, width, channels)
        try:
            if self._fd >= 0:
                os.write(self._fd, RECORD_PREFIX + record)  # one atomic write: under PIPE_BUF
            else:
                self._conn.send_bytes(record)
        except BlockingIOError:
            self.dropped += 1
        return self.sequence

    def wait_taken(self, timeout_s: float) -> bool:
        """Wait until the reader took the last frame written (or a newer one); False after `timeout_s` (no
        reader, or one that is stuck: the caller goes on, so a dead tracker never stalls the camera)."""
        buffer = self._store.buffer
        deadline = time.monotonic() + timeout_s
        while TAKEN.unpack_from(buffer, TAKEN_OFFSET)[0] < self.sequence:
            if time.monotonic() >= deadline:
                self.unwaited += 1
                return False
            time.sleep(TAKEN_POLL_S)
        return True


class FrameReader:
    """Tracker side: waits for records, skips to the newest, copies its pixels out of the ring."""

    def __init__(self, store: FrameStore, conn: Connection) -> None:
        self._store = store
        self._conn = conn
        import numpy as np  # here, not at the top: see the module's notes

        self._buffer = np.empty(store.max_frame_bytes, dtype=np.uint8)
        self.skipped = 0  # records passed over because a newer one was already waiting
        self.torn = 0  # frames overwritten before or while being read (the writer lapped the ring)
        self.misframed = 0  # pipe bytes dropped because they were not on a record boundary
        self._fd = -1
        self._poller: select.poll | None = None
        if os.name == "posix":
            self._fd = conn.fileno()
            # The reader tries a read before it waits, so reads must never block.
            os.set_blocking(self._fd, False)
            self._poller = select.poll()
            self._poller.register(self._fd, select.POLLIN)
        # A reader killed while copying left its slot marked: a restarted one starts clean.
        CONTROL.pack_into(store.buffer, 0, NO_SLOT)

    def read_newest(self, timeout_s: float) -> tuple[FrameRecord, npt.NDArray[np.uint8]] | None:
        """The newest complete frame, or None when none arrived within `timeout_s`.

        The returned image is a view into this reader's own buffer, valid until the next call.
        """
        deadline: float | None = None
        while True:
            # Read before waiting: under a flood the pipe is never empty and one system call does.
            raw = self._take_newest_raw()
            if raw is not None:
                got = self._copy(FrameRecord(*RECORD.unpack(raw)))
                if got is not None:
                    return got
            # Nothing yet, or torn: the next newer record, within what is left of the timeout.
            now = time.monotonic()
            if deadline is None:
                deadline = now + timeout_s
            if now >= deadline or not self._wait_readable(deadline - now):
                return None

    def _wait_readable(self, timeout_s: float) -> bool:
        if self._poller is not None:
            return bool(self._poller.poll(max(0.0, timeout_s) * 1000.0))
        return self._conn.poll(max(0.0, timeout_s))

    def _take_newest_raw(self) -> bytes | None:
        """Consume every pending record; the newest one's bytes (without its length prefix)."""
        if self._fd < 0:
            return self._take_newest_raw_connection()
        data = b""
        while True:
            try:
                chunk = os.read(self._fd, DRAIN_READ_BYTES)
            except BlockingIOError:
                break
            if not chunk:
                if not data:
                    raise EOFError("every writer end of the frame pipe is closed")
                break
            data += chunk
            if len(chunk) < DRAIN_READ_BYTES:
                break
        # Writes are whole records and the pipe was read empty, so `data` ends on a record boundary; only
        # its front can be the tail of a record someone else half-read (a reader killed inside
        # Connection.recv_bytes, which reads the length and the record separately).
        start = len(data) % WIRE_RECORD_BYTES
        count = len(data) // WIRE_RECORD_BYTES
        if start:
            self.misframed += start
        if count == 0:
            return None
        end = len(data)
        if (
            data[start : start + 4] != RECORD_PREFIX
            or data[end - WIRE_RECORD_BYTES : end - RECORD.size] != RECORD_PREFIX
        ):
            self.misframed += len(data) - start
            return None
        self.skipped += count - 1
        return data[end - RECORD.size :]

    def _take_newest_raw_connection(self) -> bytes | None:
        # A message-mode pipe hands out one record per call; bounded so a fast writer cannot pin the reader.
        if not self._conn.poll(0):
            return None
        raw = self._conn.recv_bytes()
        for _ in range(MAX_RECORDS_DRAINED):
            if not self._conn.poll(0):
                break
            raw = self._conn.recv_bytes()
            self.skipped += 1
        return raw

    def _copy(self, record: FrameRecord) -> tuple[FrameRecord, npt.NDArray[np.uint8]] | None:
        store = self._store
        nbytes = record.height * record.width * record.channels
        if record.slot >= store.slots or nbytes > store.max_frame_bytes:
            self.misframed += WIRE_RECORD_BYTES
            return None
        buffer = store.buffer
        header_at = store.slot_offset(record.slot)
        CONTROL.pack_into(buffer, 0, record.slot)
        try:
            if SLOT_HEADER.unpack_from(buffer, header_at)[0] != record.sequence:
                self.torn += 1  # already overwritten before we held it
                return None
            out = self._buffer[:nbytes]
            out[:] = store.pixels(record.slot)[:nbytes]
            if SLOT_HEADER.unpack_from(buffer, header_at)[0] != record.sequence:
                self.torn += 1
                return None
            TAKEN.pack_into(buffer, TAKEN_OFFSET, record.sequence)
        finally:
            CONTROL.pack_into(buffer, 0, NO_SLOT)
        return record, out.reshape(record.shape)

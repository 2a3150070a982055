"""Preview images (JPEG) from the workers to the main process, encoded only while someone watches.

Each tracker has two preview slots, "camera" (the raw frame with the ROI drawn) and "algorithm" (the
ROI with the tracking overlay). A slot is a small shared-memory buffer guarded by a sequence lock and a
shared viewer count: the worker encodes only while the count is above zero, at most `preview_fps`
times a second, once for any number of viewers. This module is the slot, which both sides use; the workers'
drawing and encoding are in app.runtime.preview_drawing, which keeps OpenCV out of the main process.
"""

from __future__ import annotations

import contextlib
import ctypes
import struct
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Any

PREVIEW_KINDS = ("camera", "algorithm")
HEADER = struct.Struct("<qdI")  # sequence (odd while writing), capture_ts, length
HEADER_BYTES = 64
MAX_PREVIEW_BYTES = 1_000_000


@dataclass(frozen=True, slots=True)
class PreviewFrame:
    sequence: int
    capture_ts: float
    jpeg: bytes


class PreviewSlot:
    """One preview buffer; created by the main process, attached by one worker by name."""

    def __init__(self, name: str | None = None, viewers: Any = None, create: bool = False) -> None:
        size = HEADER_BYTES + MAX_PREVIEW_BYTES
        self._shm = shared_memory.SharedMemory(name=name, create=create, size=size if create else 0)
        buffer = self._shm.buf
        assert buffer is not None
        self._buffer: memoryview = buffer
        self.name = self._shm.name
        self._owner = create
        self.viewers = viewers if viewers is not None else _new_counter()
        if create:
            HEADER.pack_into(self._buffer, 0, 0, 0.0, 0)
        self._sequence = 0

    @property
    def wanted(self) -> bool:
        return bool(self.viewers.value > 0)

    def publish(self, jpeg: bytes, capture_ts: float) -> None:
        if len(jpeg) > MAX_PREVIEW_BYTES:
            return
        current = HEADER.unpack_from(self._buffer, 0)[0]
        HEADER.pack_into(self._buffer, 0, current + 1, capture_ts, len(jpeg))
        self._buffer[HEADER_BYTES : HEADER_BYTES + len(jpeg)] = jpeg
        HEADER.pack_into(self._buffer, 0, current + 2, capture_ts, len(jpeg))

    def latest(self) -> PreviewFrame | None:
        for _ in range(8):
            before, capture_ts, length = HEADER.unpack_from(self._buffer, 0)
            if before == 0:
                return None
            if before % 2:
                continue
            data = bytes(self._buffer[HEADER_BYTES : HEADER_BYTES + length])
            if HEADER.unpack_from(self._buffer, 0)[0] == before:
                return PreviewFrame(before // 2, capture_ts, data)
        return None

    def close(self) -> None:
        with contextlib.suppress(BufferError):
            self._buffer.release()
            self._shm.close()
        if self._owner:
            with contextlib.suppress(FileNotFoundError):
                self._shm.unlink()


def _new_counter() -> Any:
    import multiprocessing

    return multiprocessing.get_context("spawn").RawValue(ctypes.c_int, 0)

"""Preview images (JPEG) from the workers to the main process, encoded only while someone watches.

Each tracker has two preview slots, "camera" (the raw frame with the ROI drawn) and "algorithm" (the
ROI with the tracking overlay). A slot is a small shared-memory buffer guarded by a sequence lock and a
shared viewer count: the worker encodes only while the count is above zero, at most `preview_fps`
times a second, once for any number of viewers.
"""

from __future__ import annotations

import contextlib
import ctypes
import struct
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

PREVIEW_KINDS = ("camera", "algorithm")
HEADER = struct.Struct("<qdI")  # sequence (odd while writing), capture_ts, length
HEADER_BYTES = 64
MAX_PREVIEW_BYTES = 1_000_000
JPEG_QUALITY = 80


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


class PreviewPublisher:
    """Worker side: rate-limited encoding into a slot, only while it has viewers."""

    def __init__(self, slot: PreviewSlot, max_fps: float) -> None:
        self.slot = slot
        self.interval_s = 1.0 / max_fps if max_fps > 0 else 0.0
        self._last = -1e9
        self.encoded = 0

    def due(self, now: float) -> bool:
        return self.slot.wanted and now - self._last >= self.interval_s

    def publish(self, image: npt.NDArray[np.uint8], capture_ts: float, now: float) -> None:
        self._last = now
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if ok:
            self.slot.publish(encoded.tobytes(), capture_ts)
            self.encoded += 1


def draw_roi(gray: npt.NDArray[np.uint8], roi: tuple[int, int, int, int] | None) -> npt.NDArray[np.uint8]:
    """The raw frame in colour with the ROI rectangle (x, y, w, h) drawn."""
    image = np.asarray(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
    if roi is not None:
        x, y, w, h = roi
        cv2.rectangle(image, (x, y), (x + w - 1, y + h - 1), (0, 200, 255), 1)
    return image


def draw_tracking(
    gray: npt.NDArray[np.uint8],
    pupil_x: float,
    pupil_y: float,
    ellipse_w: float,
    ellipse_h: float,
    angle_deg: float,
    confidence: float,
    openness: float,
) -> npt.NDArray[np.uint8]:
    """The tracked (ROI) frame with the pupil ellipse, its centre, confidence and openness."""
    image = np.asarray(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
    if confidence > 0 and np.isfinite(pupil_x):
        centre = (float(pupil_x), float(pupil_y))
        cv2.ellipse(image, (centre, (float(ellipse_w), float(ellipse_h)), float(angle_deg)), (0, 255, 0), 1)
        cv2.drawMarker(image, (round(pupil_x), round(pupil_y)), (0, 0, 255), cv2.MARKER_CROSS, 8, 1)
    scale = max(0.3, image.shape[1] / 600)
    cv2.putText(
        image,
        f"conf {confidence:.2f} open {openness:.2f}",
        (4, int(14 * scale / 0.4)),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (255, 255, 0),
        1,
        cv2.LINE_AA,
    )
    return image

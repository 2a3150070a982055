"""A local video file as a camera: looped, and paced at the file's own frame rate on the monotonic clock.

`paced=False` hands out frames as fast as they decode (benchmarks, offline analysis). A reader that falls
behind is not caught up with a burst: the schedule restarts from the late frame, like a camera that never
waits. With `loop=False` the source reports `ended` after the last frame and `read` then just waits.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from app.camera.base import CapturedFrame, GrayImage, SourceCounters, SourceError

AnyImage = npt.NDArray[Any]
DEFAULT_FPS = 30.0
MAX_PLAUSIBLE_FPS = 1000.0


def to_gray(image: AnyImage) -> GrayImage:
    """A frame from cv2.VideoCapture (BGR, BGRA or already grey) as 8-bit grey."""
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    elif image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.dtype != np.uint8:
        # 16-bit sources: keep the high byte.
        image = (image >> 8).astype(np.uint8) if image.dtype == np.uint16 else image.astype(np.uint8)
    gray: GrayImage = np.ascontiguousarray(image, dtype=np.uint8)
    return gray


class VideoFileSource:
    """Frames from a video file such as `eyes.mp4` (FrameSource)."""

    def __init__(self, path: str | Path, paced: bool = True, loop: bool = True) -> None:
        self.path = Path(path)
        self.paced = paced
        self.loop = loop
        self.counters = SourceCounters()
        self.waits_for_reader = not paced
        self.fps = DEFAULT_FPS
        self.frame_count = 0  # as the container reports it (may be 0 or approximate)
        self.loops = 0  # how many times the file wrapped around
        self.ended = False  # loop=False and the last frame was handed out
        self._capture: cv2.VideoCapture | None = None
        self._next_due = 0.0

    def _open_capture(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not capture.isOpened():
            capture.release()
            raise SourceError(f"cannot open video file {self.path} (not a video OpenCV can decode?)")
        return capture

    def open(self) -> None:
        self.close()
        if not self.path.is_file():
            raise SourceError(f"video file not found: {self.path}")
        capture = self._open_capture()
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        self.fps = fps if math.isfinite(fps) and 0 < fps <= MAX_PLAUSIBLE_FPS else DEFAULT_FPS
        self.frame_count = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
        self._capture = capture
        self.ended = False
        self._next_due = time.monotonic()

    def _next_image(self) -> AnyImage | None:
        assert self._capture is not None
        ok, image = self._capture.read()
        if ok and image is not None:
            return np.asarray(image)
        if not self.loop:
            self.ended = True
            return None
        # Reopening is the one rewind that works for every container and codec.
        self._capture.release()
        self._capture = self._open_capture()
        self.loops += 1
        ok, image = self._capture.read()
        if not ok or image is None:
            raise SourceError(f"video file {self.path} has no decodable frame")
        return np.asarray(image)

    def read(self, timeout_s: float) -> CapturedFrame | None:
        if self._capture is None:
            raise SourceError(f"video file {self.path} is not open")
        if self.ended:
            time.sleep(max(0.0, timeout_s))
            return None
        if self.paced:
            wait_s = self._next_due - time.monotonic()
            if wait_s > timeout_s:
                time.sleep(max(0.0, timeout_s))
                return None
            if wait_s > 0:
                time.sleep(wait_s)
        image = self._next_image()
        if image is None:
            return None
        now = time.monotonic()
        self.counters.received += 1
        self.counters.decoded += 1
        # A late reader restarts the schedule instead of bursting to catch up.
        self._next_due = max(self._next_due + 1.0 / self.fps, now)
        return CapturedFrame(gray=to_gray(image), capture_ts=now)

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def __repr__(self) -> str:
        return f"VideoFileSource({str(self.path)!r}, paced={self.paced}, loop={self.loop})"

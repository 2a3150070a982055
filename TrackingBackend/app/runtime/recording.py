"""Recording a tracker's raw camera frames to a video file, for bug reports and offline tuning.

The main process decides the file name (always inside the user data dir: the API never takes a path)
and raises a shared flag; the camera process sees it between frames and writes MJPEG-in-AVI, which
`analyze` and the `video file` source read back.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

logger = logging.getLogger(__name__)

MAX_PATH_BYTES = 1024
RECORDING_FPS_FALLBACK = 60.0


class RecordingControl:
    """Shared between the main process (writer of the request) and the camera process (reader)."""

    def __init__(self) -> None:
        spawn = multiprocessing.get_context("spawn")
        self.active = spawn.RawValue(ctypes.c_bool, False)
        self.generation = spawn.RawValue(ctypes.c_int, 0)  # bumped at every start, so a new file is opened
        self.path = spawn.RawArray(ctypes.c_char, MAX_PATH_BYTES)
        self.frames = spawn.RawValue(ctypes.c_long, 0)  # written by the camera process

    def start(self, path: Path) -> None:
        encoded = str(path).encode("utf-8")
        if len(encoded) >= MAX_PATH_BYTES:
            raise ValueError("recording path too long")
        self.path.value = encoded
        self.frames.value = 0
        self.generation.value += 1
        self.active.value = True

    def stop(self) -> None:
        self.active.value = False

    def channel(self) -> tuple[Any, Any, Any, Any]:
        return self.active, self.generation, self.path, self.frames


def recording_path(folder: Path, tracker_name: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", tracker_name).strip("-") or "tracker"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return folder / f"{safe}-{stamp}.avi"


class Recorder:
    """Camera-process side: follows the shared flag, writes raw frames while it is up."""

    def __init__(self, channel: tuple[Any, Any, Any, Any], fps: float = RECORDING_FPS_FALLBACK) -> None:
        self._active, self._generation, self._path, self._frames = channel
        self._fps = fps
        self._writer: Any = None
        self._open_generation = -1
        self._size: tuple[int, int] | None = None

    def feed(self, gray: npt.NDArray[np.uint8]) -> None:
        if not self._active.value:
            if self._writer is not None:
                self.close()
            return
        generation = self._generation.value
        height, width = gray.shape[:2]
        if self._writer is None or generation != self._open_generation or self._size != (width, height):
            self.close()
            path = Path(self._path.value.decode("utf-8"))
            path.parent.mkdir(parents=True, exist_ok=True)
            import cv2  # here, not at the top: the main process imports this module for RecordingControl

            writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), self._fps, (width, height), False)
            if not writer.isOpened():
                logger.error("cannot record to %s", path)
                self._active.value = False
                return
            logger.info("recording %dx%d frames to %s", width, height, path)
            self._writer, self._open_generation, self._size = writer, generation, (width, height)
        self._writer.write(gray)
        self._frames.value += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

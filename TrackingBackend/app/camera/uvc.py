"""A UVC webcam (OpenIris ESP-IDF firmware, other USB eye cameras) through cv2.VideoCapture.

The backend is chosen per OS (V4L2 on Linux, DirectShow then Media Foundation on Windows, AVFoundation on
macOS) and MJPEG 240x240 at 60 fps is requested; cameras that cannot do it keep their own mode.
cv2 gives no per-call timeout: `read` returns when the driver delivers a frame (V4L2 itself gives up after
about 10 s), so `timeout_s` is only a hint here. A failed read means the camera is gone: SourceError.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2

from app.camera.base import CapturedFrame, SourceCounters, SourceError
from app.camera.video_file import to_gray

REQUESTED_WIDTH_PX = 240
REQUESTED_HEIGHT_PX = 240
REQUESTED_FPS = 60.0


def platform_backends(platform: str = sys.platform) -> list[int]:
    """cv2 capture backends to try, best first."""
    if platform.startswith("linux"):
        return [cv2.CAP_V4L2]
    if platform == "win32":
        return [cv2.CAP_DSHOW, cv2.CAP_MSMF]
    if platform == "darwin":
        return [cv2.CAP_AVFOUNDATION]
    return [cv2.CAP_ANY]


class UvcSource:
    """Frames from a UVC camera given as an index (`0`) or a device path (`/dev/video2`) (FrameSource)."""

    def __init__(self, index_or_path: int | str, *, backends: list[int] | None = None) -> None:
        if isinstance(index_or_path, str) and index_or_path.strip().isdigit():
            index_or_path = int(index_or_path.strip())
        self.device: int | str = index_or_path
        self.backends = backends if backends is not None else platform_backends()
        self.counters = SourceCounters()
        self.waits_for_reader = False  # a camera keeps its own time
        self.mode = ""  # the mode the camera actually runs, e.g. "MJPG 240x240 @ 60 fps"
        self._capture: cv2.VideoCapture | None = None

    def open(self) -> None:
        self.close()
        if isinstance(self.device, str) and not Path(self.device).exists():
            raise SourceError(f"UVC camera device {self.device} does not exist (unplugged?)")
        tried: list[str] = []
        for backend in self.backends:
            capture = cv2.VideoCapture(self.device, backend)
            if capture.isOpened():
                self._configure(capture)
                self._capture = capture
                return
            capture.release()
            tried.append(cv2.videoio_registry.getBackendName(backend))
        raise SourceError(
            f"cannot open UVC camera {self.device!r} (tried {', '.join(tried) or 'no backend'}): "
            "is it plugged in, used by another program, or missing permissions (video group on Linux)?"
        )

    def _configure(self, capture: cv2.VideoCapture) -> None:
        capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG"))
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, REQUESTED_WIDTH_PX)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, REQUESTED_HEIGHT_PX)
        capture.set(cv2.CAP_PROP_FPS, REQUESTED_FPS)
        # One driver buffer: older frames queued in the driver are latency, not data.
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        fourcc = int(capture.get(cv2.CAP_PROP_FOURCC))
        codec = "".join(chr((fourcc >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00") or "?"
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.mode = f"{codec} {width}x{height} @ {capture.get(cv2.CAP_PROP_FPS):g} fps"

    def read(self, timeout_s: float) -> CapturedFrame | None:
        if self._capture is None:
            raise SourceError(f"UVC camera {self.device!r} is not open")
        ok, image = self._capture.read()
        now = time.monotonic()
        if not ok or image is None:
            raise SourceError(f"UVC camera {self.device!r} stopped delivering frames (unplugged?)")
        self.counters.received += 1
        self.counters.decoded += 1
        return CapturedFrame(gray=to_gray(image), capture_ts=now)

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def __repr__(self) -> str:
        return f"UvcSource({self.device!r})"

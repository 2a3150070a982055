"""The interface every camera source meets, and the errors it raises."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

GrayImage = npt.NDArray[np.uint8]


class SourceError(Exception):
    """The source cannot deliver frames now (not found, refused, disconnected, timed out).

    The camera process reports the message as the camera's last error and reconnects with backoff.
    """


@dataclass(slots=True)
class CapturedFrame:
    """One decoded frame as it left the source."""

    gray: GrayImage  # H x W uint8, the raw frame before rotation and ROI
    capture_ts: float  # time.monotonic() when the frame arrived (or was rendered)
    # Ground truth when the source knows it (the virtual eye); None for real cameras.
    truth: object | None = None


@dataclass(slots=True)
class SourceCounters:
    received: int = 0  # frames (or packets) that arrived
    decoded: int = 0  # frames decoded into images
    corrupt: int = 0  # frames dropped because they did not decode or were malformed


class FrameSource(Protocol):
    """Opened by the camera process; `read` blocks at most `timeout_s` and returns None on timeout.

    `waits_for_reader`: the source has no clock of its own (it makes frames as fast as asked), so the camera
    process hands it the next read only once the tracker took the last frame (see app.runtime.frames).
    """

    counters: SourceCounters
    waits_for_reader: bool

    def open(self) -> None: ...

    def read(self, timeout_s: float) -> CapturedFrame | None: ...

    def close(self) -> None: ...

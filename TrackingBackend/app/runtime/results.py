"""Tracker results as flat float records: sent tracker -> OSC through a pipe, and posted on a board.

The board is one shared array with a row per tracker, written only by that tracker's process and read
by every OSC process (to combine both eyes) and by the main process (status, live data). Rows are
guarded by a sequence lock (odd while writing), so no process ever waits on a lock another one might
hold when it is killed.
"""

from __future__ import annotations

import ctypes
import math
import operator
import struct
from dataclasses import dataclass, fields
from multiprocessing.sharedctypes import RawArray
from typing import Any, cast

from app.tracking.results import EyeResult

MAX_TRACKERS = 8


@dataclass(slots=True)
class ResultRecord:
    """One frame's output, flat: what crosses process boundaries."""

    sequence: float = 0.0  # frame sequence (a float to keep the record homogeneous)
    capture_ts: float = 0.0  # monotonic time the frame was captured
    processed_ts: float = 0.0  # monotonic time the tracker finished it
    pupil_x: float = math.nan  # pixels in the ROI frame; NaN when not found
    pupil_y: float = math.nan
    ellipse_w: float = 0.0
    ellipse_h: float = 0.0
    ellipse_angle: float = 0.0
    confidence: float = 0.0
    gaze_x: float = 0.0
    gaze_y: float = 0.0
    openness: float = 1.0
    blink: float = 0.0
    dilation: float = 0.5
    widen: float = 0.0
    squeeze: float = 0.0
    calibration_progress: float = -1.0
    fps: float = 0.0
    latency_ms: float = 0.0  # capture -> processed
    frame_w: float = 0.0
    frame_h: float = 0.0

    @classmethod
    def from_eye_result(
        cls,
        result: EyeResult,
        sequence: int,
        capture_ts: float,
        processed_ts: float,
        fps: float,
        frame_w: int,
        frame_h: int,
    ) -> ResultRecord:
        pupil = result.pupil
        return cls(
            float(sequence),
            capture_ts,
            processed_ts,
            pupil.x if pupil.found else math.nan,
            pupil.y if pupil.found else math.nan,
            pupil.ellipse_w,
            pupil.ellipse_h,
            pupil.angle_deg,
            pupil.confidence,
            result.gaze_x,
            result.gaze_y,
            result.openness,
            1.0 if result.blink else 0.0,
            result.dilation,
            result.widen,
            result.squeeze,
            result.calibration_progress,
            fps,
            (processed_ts - capture_ts) * 1000.0,
            float(frame_w),
            float(frame_h),
        )

    def as_tuple(self) -> tuple[float, ...]:
        return cast(tuple[float, ...], _field_values(self))

    def as_dict(self) -> dict[str, Any]:
        return {f.name: _json_float(getattr(self, f.name)) for f in fields(self)}


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else value


FIELD_COUNT = len(fields(ResultRecord))
# Per frame, on the hot path: one C-level getter instead of walking dataclasses.fields().
_field_values = operator.attrgetter(*(f.name for f in fields(ResultRecord)))
PACKED = struct.Struct(f"<{FIELD_COUNT}d")
ROW_WIDTH = FIELD_COUNT + 1  # + the seqlock word
DOUBLE_BYTES = 8
BOARD_VALUES = struct.Struct(f"={FIELD_COUNT}d")  # a row's values, native order like the shared doubles
BOARD_ROW = struct.Struct(f"={ROW_WIDTH}d")


def pack_result(record: ResultRecord) -> bytes:
    return PACKED.pack(*record.as_tuple())


def unpack_result(raw: bytes) -> ResultRecord:
    return ResultRecord(*PACKED.unpack(raw))


class ResultBoard:
    """Latest result per tracker slot, shared by all processes (create in the parent, pass at spawn).

    Plain memoryviews and struct rather than numpy: the OSC process then never imports numpy (~14 MB
    less resident), and a post or read is one pack/unpack.
    """

    def __init__(self, shared: Any | None = None) -> None:
        self.shared = shared if shared is not None else RawArray(ctypes.c_double, MAX_TRACKERS * ROW_WIDTH)
        self._bytes = memoryview(self.shared).cast("B")
        self._doubles = self._bytes.cast("d")

    def __reduce__(self) -> tuple[Any, ...]:
        return (ResultBoard, (self.shared,))

    def post(self, slot: int, record: ResultRecord) -> None:
        lock_at = slot * ROW_WIDTH
        self._doubles[lock_at] += 1.0  # odd: being written
        BOARD_VALUES.pack_into(self._bytes, (lock_at + 1) * DOUBLE_BYTES, *_field_values(record))
        self._doubles[lock_at] += 1.0

    def read(self, slot: int) -> ResultRecord | None:
        """The slot's latest record, or None if it never posted (or kept changing while read)."""
        lock_at = slot * ROW_WIDTH
        for _ in range(8):
            before = self._doubles[lock_at]
            values = BOARD_VALUES.unpack_from(self._bytes, (lock_at + 1) * DOUBLE_BYTES)
            if before == self._doubles[lock_at] and int(before) % 2 == 0:
                return None if before == 0 else ResultRecord(*values)
        return None

    def clear(self, slot: int) -> None:
        BOARD_ROW.pack_into(self._bytes, slot * ROW_WIDTH * DOUBLE_BYTES, *([0.0] * ROW_WIDTH))

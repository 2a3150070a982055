"""Typed results of the tracking algorithms (pure data)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PupilResult:
    """A pupil found in one frame, in the pixel coordinates of the image the detector was given.

    Failure is `PupilResult.none()` (confidence 0), never None and never an exception.
    """

    x: float = 0.0
    y: float = 0.0
    # Full axes of the fitted ellipse (width along its own x before rotation, height), pixels.
    ellipse_w: float = 0.0
    ellipse_h: float = 0.0
    angle_deg: float = 0.0
    confidence: float = 0.0
    algorithm: str = ""

    @property
    def found(self) -> bool:
        return self.confidence > 0.0

    @classmethod
    def none(cls, algorithm: str = "") -> PupilResult:
        return cls(algorithm=algorithm)


@dataclass(frozen=True, slots=True)
class EyeResult:
    """Everything the pipeline outputs for one frame (before OSC mapping)."""

    pupil: PupilResult
    gaze_x: float  # [-1, 1], +x = the user looks to their right
    gaze_y: float  # [-1, 1], +y = up
    openness: float  # [0, 1], 1 = open
    blink: bool
    dilation: float  # [0, 1]; 0.5 when not measured
    widen: float = 0.0  # [0, 1]
    squeeze: float = 0.0  # [0, 1]
    calibration_progress: float = -1.0  # [0, 1] while calibrating, -1 otherwise
    raw_openness: float = 1.0  # [0, 1], openness before the One-Euro filter
    closure: float = 0.0  # [0, 1], the eye-closure classifier's probability (0 when it did not run)

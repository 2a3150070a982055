"""The per-frame tracking pipeline: gray frame in, EyeResult out (pure composition, no I/O)."""

from __future__ import annotations

import numpy as np

from app.camera.base import GrayImage
from app.config.models import TrackerConfig
from app.tracking.pupil.blob import detect_pupil_blob
from app.tracking.results import EyeResult, PupilResult


class EyePipeline:
    """Stateful per-tracker pipeline. The tracker process owns one; tests and `analyze` call it directly."""

    def __init__(self, config: TrackerConfig) -> None:
        self.config = config

    def update_config(self, config: TrackerConfig) -> None:
        self.config = config

    def recenter(self) -> None:
        """Make the current gaze the centre."""

    def start_calibration(self, ts: float) -> None:
        """Begin a timed calibration at time `ts` (seconds, same clock as `process`)."""

    def process(self, gray: GrayImage, ts: float) -> EyeResult:
        pupil = detect_pupil_blob(gray, ts)
        return self._to_eye_result(pupil, gray.shape[1], gray.shape[0])

    def _to_eye_result(self, pupil: PupilResult, width: int, height: int) -> EyeResult:
        mapping = self.config.calibration.mapping
        if not pupil.found:
            return EyeResult(pupil, 0.0, 0.0, 0.0, True, 0.5)
        nx, ny = pupil.x / max(width, 1), pupil.y / max(height, 1)
        gx = (nx - mapping.center_x) / mapping.half_range_x
        gy = (ny - mapping.center_y) / mapping.half_range_y
        if mapping.invert_x:
            gx = -gx
        if mapping.invert_y:
            gy = -gy
        if self.config.camera.flip_x_axis:
            gx = -gx
        if self.config.camera.flip_y_axis:
            gy = -gy
        return EyeResult(
            pupil,
            float(np.clip(gx, -1.0, 1.0)),
            float(np.clip(gy, -1.0, 1.0)),
            1.0,
            False,
            0.5,
        )

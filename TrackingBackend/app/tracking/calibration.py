"""Timed gaze calibration: the user looks around; a robust fit maps pupil positions to gaze in [-1, 1].

Pupil positions are normalised to the tracked frame (0..1). The fit takes robust extremes (percentiles,
so a few wrong detections do not stretch the range) and the median as the centre; recenter moves the
centre to the current position and keeps the range.
"""

from __future__ import annotations

import numpy as np

from app.config.models import CalibrationConfig, GazeMappingConfig

# Robust extremes of the looked-around positions map to gaze ±1.
RANGE_PERCENTILES = (3.0, 97.0)
MIN_SAMPLES = 30
MIN_HALF_RANGE = 0.02


def map_gaze(x_norm: float, y_norm: float, mapping: GazeMappingConfig) -> tuple[float, float]:
    """Normalised pupil position -> gaze (x, y) in [-1, 1], +x = user's right, +y = up."""
    gx = (x_norm - mapping.center_x) / mapping.half_range_x
    gy = (y_norm - mapping.center_y) / mapping.half_range_y
    if mapping.invert_x:
        gx = -gx
    if mapping.invert_y:
        gy = -gy
    # min/max, not np.clip: on two floats per frame NumPy's dispatch costs 20x the work.
    return float(min(max(gx, -1.0), 1.0)), float(min(max(gy, -1.0), 1.0))


def fit_mapping(xs: list[float], ys: list[float], base: GazeMappingConfig) -> GazeMappingConfig | None:
    """Centre = median, half-range = half the robust spread; None when too few samples."""
    if len(xs) < MIN_SAMPLES:
        return None
    x_arr, y_arr = np.asarray(xs), np.asarray(ys)
    x_lo, x_hi = np.percentile(x_arr, RANGE_PERCENTILES)
    y_lo, y_hi = np.percentile(y_arr, RANGE_PERCENTILES)
    return base.model_copy(
        update={
            "center_x": float(np.clip(np.median(x_arr), -1.0, 2.0)),
            "center_y": float(np.clip(np.median(y_arr), -1.0, 2.0)),
            "half_range_x": float(np.clip((x_hi - x_lo) / 2.0, MIN_HALF_RANGE, 2.0)),
            "half_range_y": float(np.clip((y_hi - y_lo) / 2.0, MIN_HALF_RANGE, 2.0)),
        }
    )


class GazeCalibrator:
    """Collects pupil positions for `duration_s` after `start`; `add` returns the new config when done."""

    def __init__(self) -> None:
        self._start_ts: float | None = None
        self._xs: list[float] = []
        self._ys: list[float] = []

    @property
    def active(self) -> bool:
        return self._start_ts is not None

    def start(self, ts: float) -> None:
        self._start_ts = ts
        self._xs.clear()
        self._ys.clear()

    def progress(self, ts: float, duration_s: float) -> float:
        if self._start_ts is None:
            return -1.0
        return float(np.clip((ts - self._start_ts) / duration_s, 0.0, 1.0))

    def add(
        self, x_norm: float | None, y_norm: float | None, ts: float, config: CalibrationConfig
    ) -> CalibrationConfig | None:
        """Add one sample (None when no pupil); at the end of the period return the fitted calibration."""
        if self._start_ts is None:
            return None
        if x_norm is not None and y_norm is not None:
            self._xs.append(x_norm)
            self._ys.append(y_norm)
        if ts - self._start_ts < config.duration_s:
            return None
        self._start_ts = None
        mapping = fit_mapping(self._xs, self._ys, config.mapping)
        if mapping is None:
            return None
        return config.model_copy(update={"calibrated": True, "mapping": mapping})


def recentered(config: CalibrationConfig, x_norm: float, y_norm: float) -> CalibrationConfig:
    mapping = config.mapping.model_copy(
        update={"center_x": float(np.clip(x_norm, -1.0, 2.0)), "center_y": float(np.clip(y_norm, -1.0, 2.0))}
    )
    return config.model_copy(update={"mapping": mapping})

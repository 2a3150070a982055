"""Eyelid openness, blink, widen, squeeze and pupil dilation from image cues, self-calibrating per user.

The main cue is the visible aperture: along a vertical band through the pupil (or where it last was), the
run of rows darker than half-way between the iris and the skin is the part of the iris the lids leave
uncovered. Its height over the user's relaxed baseline (a running median while the pupil is clearly seen)
is the openness; above the baseline it is `widen`, below it with the pupil still visible it is `squeeze`.
A missing pupil caps openness, so a closed eye reads closed even when the aperture cue is fooled by lashes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from app.tracking.results import PupilResult

GrayU8 = npt.NDArray[np.uint8]

HISTORY_FRAMES = 600
# Baselines are refreshed every this many accepted samples (medians of a deque are not free).
REFRESH_EVERY = 15
MIN_BASELINE_SAMPLES = 20
# Iris height ~ this x the pupil diameter until the user's own baseline is measured.
DEFAULT_APERTURE_PER_PUPIL = 2.6
# With no pupil seen, openness is at most this (a lid cue alone is easily fooled by lashes).
NO_PUPIL_OPENNESS_CAP = 0.15
# Pupil visibility ramps: (value at 0, value at 1) for confidence and minor/major axis ratio.
VISIBLE_CONFIDENCE = (0.75, 0.95)
VISIBLE_ASPECT = (0.5, 0.7)
# Pupil size may differ from the user's usual size by this log-ratio before visibility drops.
SIZE_TOLERANCE_LOG, SIZE_SPAN_LOG = 0.8, 0.4
BLINK_ON, BLINK_OFF = 0.25, 0.4
# A relaxed eye varies a little around its baseline: this dead zone keeps widen and squeeze at 0.
WIDEN_DEAD_ZONE, SQUEEZE_DEAD_ZONE = 0.08, 0.1
DEFAULT_WIDEN_SPAN, SQUEEZE_SPAN = 0.35, 0.5
MIN_DILATION_SAMPLES = 60
MIN_DILATION_RANGE = 0.1


@dataclass(frozen=True, slots=True)
class LidState:
    openness: float
    blink: bool
    dilation: float
    widen: float
    squeeze: float
    aperture_px: float


def _run_length(profile: npt.NDArray[np.float32], row: int, threshold: float) -> float:
    """Length of the run of values below `threshold` around `row`, with sub-row crossings."""
    if profile[row] >= threshold:
        return 0.0
    above = profile >= threshold
    top = row
    while top > 0 and not above[top - 1]:
        top -= 1
    bottom = row
    while bottom < len(profile) - 1 and not above[bottom + 1]:
        bottom += 1
    length = float(bottom - top + 1)
    # Fractional part at each end from the linear crossing.
    if top > 0:
        a, b = float(profile[top - 1]), float(profile[top])
        length += (a - threshold) / max(a - b, 1e-6) - 0.5
    if bottom < len(profile) - 1:
        a, b = float(profile[bottom + 1]), float(profile[bottom])
        length += (a - threshold) / max(a - b, 1e-6) - 0.5
    return max(length, 0.0)


class _RunningMedian:
    def __init__(self, size: int = HISTORY_FRAMES) -> None:
        self.values: deque[float] = deque(maxlen=size)
        self._count = 0
        self.median: float | None = None
        self.high: float | None = None
        self.low: float | None = None

    def add(self, value: float) -> None:
        self.values.append(value)
        self._count += 1
        if self._count % REFRESH_EVERY == 0 or len(self.values) == MIN_BASELINE_SAMPLES:
            array = np.fromiter(self.values, np.float64)
            self.low, self.median, self.high = (float(v) for v in np.percentile(array, (5, 50, 97)))

    @property
    def ready(self) -> bool:
        return len(self.values) >= MIN_BASELINE_SAMPLES and self.median is not None


class LidEstimator:
    """Per-eye lid and pupil-size state; `update` takes every frame and the pupil found in it."""

    def __init__(self, confident: float = 0.5) -> None:
        self.confident = confident
        self._aperture = _RunningMedian()
        self._pupil_size = _RunningMedian()
        self._iris_level: float | None = None
        self._skin_level: float | None = None
        self._last_x: float | None = None
        self._last_y: float | None = None
        self._last_radius = 0.0
        self._blink = False

    def update(self, gray: GrayU8, pupil: PupilResult) -> LidState:
        height, width = gray.shape
        visibility = self._visibility(pupil)
        seen = visibility >= 0.5
        if seen:
            self._last_x, self._last_y = pupil.x, pupil.y
            self._last_radius = max(pupil.ellipse_w, pupil.ellipse_h) / 2.0
        x = self._last_x if self._last_x is not None else width / 2.0
        y = self._last_y if self._last_y is not None else height / 2.0
        radius = self._last_radius or min(height, width) * 0.06
        self._update_levels(gray, x, y, radius, seen)
        aperture = self._aperture_px(gray, x, y, radius)
        if seen:
            self._aperture.add(aperture)
            self._pupil_size.add(max(pupil.ellipse_w, pupil.ellipse_h))
        baseline = self._aperture.median if self._aperture.ready and self._aperture.median else None
        if baseline is None or baseline <= 0:
            baseline = max(DEFAULT_APERTURE_PER_PUPIL * 2.0 * radius, 1.0)
        ratio = aperture / baseline
        openness = float(np.clip(ratio, 0.0, 1.0))
        openness = min(openness, NO_PUPIL_OPENNESS_CAP + (1.0 - NO_PUPIL_OPENNESS_CAP) * visibility)
        widen_span = DEFAULT_WIDEN_SPAN
        if self._aperture.ready and self._aperture.high and baseline:
            widen_span = max(self._aperture.high / baseline - 1.0 - WIDEN_DEAD_ZONE, DEFAULT_WIDEN_SPAN / 2.0)
        # Widen and squeeze are relative to the user's relaxed eye: nothing is reported until it is measured.
        calibrated = seen and self._aperture.ready
        widen = float(np.clip((ratio - 1.0 - WIDEN_DEAD_ZONE) / widen_span, 0.0, 1.0)) if calibrated else 0.0
        squeeze = float(np.clip((1.0 - SQUEEZE_DEAD_ZONE - ratio) / SQUEEZE_SPAN, 0.0, 1.0)) if calibrated else 0.0
        if self._blink and openness > BLINK_OFF:
            self._blink = False
        elif not self._blink and openness < BLINK_ON:
            self._blink = True
        return LidState(openness, self._blink, self._dilation(pupil, seen), widen, squeeze, aperture)

    def _visibility(self, pupil: PupilResult) -> float:
        """How surely a real pupil is seen: confident, round enough, and of the user's usual size.

        Closed lids still offer dark, outlined shapes (the lash line, the crease); they are flat and of
        the wrong size, so those cues separate them from a pupil.
        """
        if pupil.confidence < self.confident:
            return 0.0
        long_axis = max(pupil.ellipse_w, pupil.ellipse_h, 1e-3)
        aspect = min(pupil.ellipse_w, pupil.ellipse_h) / long_axis
        terms = [
            (pupil.confidence - VISIBLE_CONFIDENCE[0]) / (VISIBLE_CONFIDENCE[1] - VISIBLE_CONFIDENCE[0]),
            (aspect - VISIBLE_ASPECT[0]) / (VISIBLE_ASPECT[1] - VISIBLE_ASPECT[0]),
        ]
        usual = self._pupil_size.median if self._pupil_size.ready else None
        if usual:
            size_error = abs(float(np.log(long_axis / usual)))
            terms.append(1.0 - (size_error - SIZE_TOLERANCE_LOG) / SIZE_SPAN_LOG)
        return float(np.clip(min(terms), 0.0, 1.0))

    def _update_levels(self, gray: GrayU8, x: float, y: float, radius: float, seen: bool) -> None:
        # Skin: the bright part of the frame; iris: a ring just outside the pupil.
        skin = float(np.percentile(gray[::2, ::2], 85))
        self._skin_level = skin if self._skin_level is None else 0.95 * self._skin_level + 0.05 * skin
        if not seen:
            return
        height, width = gray.shape
        r_in, r_out = int(radius * 1.3) + 1, int(radius * 2.2) + 2
        x0, x1 = max(int(x) - r_out, 0), min(int(x) + r_out + 1, width)
        y0, y1 = max(int(y) - r_out, 0), min(int(y) + r_out + 1, height)
        patch = gray[y0:y1, x0:x1]
        yy, xx = np.ogrid[y0:y1, x0:x1]
        distance = np.hypot(xx - x, yy - y)
        ring = patch[(distance >= r_in) & (distance <= r_out)]
        if ring.size:
            iris = float(np.median(ring))
            self._iris_level = iris if self._iris_level is None else 0.9 * self._iris_level + 0.1 * iris

    def _aperture_px(self, gray: GrayU8, x: float, y: float, radius: float) -> float:
        if self._iris_level is None or self._skin_level is None:
            return 0.0
        height, width = gray.shape
        half = max(int(radius), 2)
        x0, x1 = max(int(x) - half, 0), min(int(x) + half + 1, width)
        if x1 <= x0:
            return 0.0
        profile = cv2.reduce(gray[:, x0:x1], 1, cv2.REDUCE_AVG, dtype=cv2.CV_32F)[:, 0]
        profile = np.asarray(cv2.GaussianBlur(profile.reshape(-1, 1), (1, 5), 0)[:, 0], np.float32)
        threshold = 0.5 * (self._iris_level + self._skin_level)
        row = int(np.clip(round(y), 0, height - 1))
        # Near the pupil row, start from the darkest row (the pupil itself may have moved a little).
        lo, hi = max(row - half, 0), min(row + half + 1, height)
        row = lo + int(np.argmin(profile[lo:hi]))
        return _run_length(np.asarray(profile, np.float32), row, threshold)

    def _dilation(self, pupil: PupilResult, seen: bool) -> float:
        sizes = self._pupil_size
        if not seen or len(sizes.values) < MIN_DILATION_SAMPLES or sizes.low is None or sizes.high is None:
            return 0.5
        if sizes.median is None or sizes.high - sizes.low < MIN_DILATION_RANGE * sizes.median:
            return 0.5
        size = max(pupil.ellipse_w, pupil.ellipse_h)
        return float(np.clip((size - sizes.low) / (sizes.high - sizes.low), 0.0, 1.0))

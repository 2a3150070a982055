"""How likely the eye is closed or closing, from the look of the whole frame: a tiny CNN on near-IR eyes.

The lids' geometry (app.tracking.openness) tells a closed eye well, but a closing or squeezed-shut eye with
some pupil still showing reads as mostly open there, and MEYE's hand-made blink flags count exactly those
frames as blinks. A small network trained on those flags (tools/train_eye_closure.py: 4 conv layers, about
15k weights, 32x32 input) reads them from the whole frame; OpenCV's DNN module runs it in 50-100 us.

The frame is squeezed to INPUT_PX square (area average) and normalised to zero mean and unit contrast, as in
training. The network's file ships with the package (models/eye_closure.onnx); a test or the benchmark can
pass other weights (e.g. a model trained without the subject it is scored on).
"""

from __future__ import annotations

import math
from functools import cache, lru_cache
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

INPUT_PX = 32
MODEL_PATH = Path(__file__).resolve().parent / "models" / "eye_closure.onnx"
# Gray levels are 0-255 here and 0-1 in training, whose normaliser adds 1/255 to the contrast.
CONTRAST_FLOOR = 1.0
# OpenCV's area shrink costs about 0.5 ns a source pixel when both factors are whole (480 x 640 to 32 x 32: 143 us)
# and about 3 ns otherwise (240 x 240: 150-230 us, 408 x 240: 290-450 us); the area means through the frame's integral
# image cost 35-90 us up to 408 x 240. Below this many pixels OpenCV's is the cheaper either way.
INTEGRAL_SHRINK_MIN_PX = 12_000


@cache
def shipped_model() -> bytes:
    """The trained network shipped with the package (read once per process)."""
    return MODEL_PATH.read_bytes()


class EyeClosureClassifier:
    """`closed_probability(gray)`: the probability in [0, 1] that the eye in `gray` is closed or closing.

    A network that cannot be loaded (a damaged install) is not fatal: `problem` says why, and every probability is
    0, so blinks come from the lids alone.
    """

    def __init__(self, model: bytes | None = None) -> None:
        self.problem = ""
        self._net: cv2.dnn.Net | None = None
        try:
            weights = np.frombuffer(shipped_model() if model is None else model, np.uint8)
            self._net = cv2.dnn.readNetFromONNX(weights)
        except (OSError, cv2.error) as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            self.problem = f"the eye-closure network could not be loaded ({reason}): blinks come from the lids alone"

    def closed_probability(self, gray: npt.NDArray[np.uint8]) -> float:
        if gray.size == 0 or self._net is None:
            return 0.0
        small = area_shrunk(gray, INPUT_PX)
        mean, std = cv2.meanStdDev(small)
        blob = (small - float(mean[0, 0])) * (1.0 / (float(std[0, 0]) + CONTRAST_FLOOR))
        self._net.setInput(blob.reshape(1, 1, INPUT_PX, INPUT_PX))
        logit = float(self._net.forward()[0, 0])
        if logit < -30.0:  # exp overflow guard; the probability is 0 to float precision anyway
            return 0.0
        return 1.0 / (1.0 + math.exp(-logit))


def area_shrunk(gray: npt.NDArray[np.uint8], side: int) -> npt.NDArray[np.float32]:
    """`gray` area-averaged to side x side and rounded to whole grey levels: OpenCV's INTER_AREA shrink."""
    height, width = gray.shape
    whole = height % side == 0 and width % side == 0
    if whole or height * width < INTEGRAL_SHRINK_MIN_PX or height < side or width < side or 32 % side:
        return np.asarray(cv2.resize(gray, (side, side), interpolation=cv2.INTER_AREA), np.float32)
    # A box's sum is four corners of the integral image, and between its samples the integral image is bilinear:
    # OpenCV's bilinear remap reads the corners at fractional positions, exactly, since they fall on its 1/32-pixel
    # grid (multiples of height / side, width / side with side dividing 32).
    map_x, map_y, per_box = _box_corners(height, width, side)
    integral = cv2.integral(gray, sdepth=cv2.CV_64F)
    corners = cv2.remap(integral, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    sums = corners[1:, 1:] - corners[:-1, 1:] - corners[1:, :-1] + corners[:-1, :-1]
    shrunk: npt.NDArray[np.float32] = np.rint(sums * per_box).astype(np.float32)
    return shrunk


@lru_cache(maxsize=8)
def _box_corners(height: int, width: int, side: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], float]:
    """Remap maps of the (side + 1)^2 box corners in a height x width frame, and 1 / a box's area."""
    xs = (np.arange(side + 1) * (width / side)).astype(np.float32)
    ys = (np.arange(side + 1) * (height / side)).astype(np.float32)
    map_x, map_y = np.meshgrid(xs, ys)
    return map_x, map_y, side * side / (height * width)


# The classifier's flag turns on at CLOSING_ON and off under CLOSING_OFF; a pupil shown at least PLAIN_PUPIL plainly
# (app.tracking.openness: confident, of its usual size and shape, dark) overrules it (the pipeline does not even run
# the network then). Chosen on MEYE's held-out folds (0.7 to 0.8 on and 0.5 to 0.6 off score within 0.01 of F1 of
# each other): 0.8 keeps a lid held half way (openness 0.5, the edge of "closing") mostly unflagged, the hysteresis
# keeps a steady eye from flickering, and the veto costs 0.005 of F1 on MEYE and keeps wide-open eyes of real VR
# clips unflagged.
CLOSING_ON, CLOSING_OFF = 0.8, 0.6
PLAIN_PUPIL = 0.95


class ClosingFlag:
    """The classifier's closed-or-closing verdict over time, with hysteresis."""

    def __init__(self) -> None:
        self._on = False

    def update(self, probability: float) -> bool:
        self._on = probability >= (CLOSING_OFF if self._on else CLOSING_ON)
        return self._on

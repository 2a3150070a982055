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
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

INPUT_PX = 32
MODEL_PATH = Path(__file__).resolve().parent / "models" / "eye_closure.onnx"
# Gray levels are 0-255 here and 0-1 in training, whose normaliser adds 1/255 to the contrast.
CONTRAST_FLOOR = 1.0


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
        small = cv2.resize(gray, (INPUT_PX, INPUT_PX), interpolation=cv2.INTER_AREA).astype(np.float32)
        mean, std = cv2.meanStdDev(small)
        blob = (small - float(mean[0, 0])) * (1.0 / (float(std[0, 0]) + CONTRAST_FLOOR))
        self._net.setInput(blob.reshape(1, 1, INPUT_PX, INPUT_PX))
        logit = float(self._net.forward()[0, 0])
        if logit < -30.0:  # exp overflow guard; the probability is 0 to float precision anyway
            return 0.0
        return 1.0 / (1.0 + math.exp(-logit))


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

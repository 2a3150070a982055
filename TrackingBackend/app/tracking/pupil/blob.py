"""Dark-blob pupil detector: threshold near the darkest level, largest compact blob, ellipse fit."""

from __future__ import annotations

import cv2
import numpy as np

from app.camera.base import GrayImage
from app.tracking.results import PupilResult

MIN_BLOB_AREA_PX = 12


def detect_pupil_blob(gray: GrayImage, ts: float = 0.0, offset: int = 25) -> PupilResult:
    """The pupil is the darkest compact region: threshold a little above the darkest level."""
    if gray.size == 0:
        return PupilResult.none("BLOB")
    small = cv2.GaussianBlur(gray, (5, 5), 0)
    darkest = int(np.percentile(small, 1))
    _, mask = cv2.threshold(small, darkest + offset, 255, cv2.THRESH_BINARY_INV)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    best = max(contours, key=cv2.contourArea, default=None)
    if best is None or cv2.contourArea(best) < MIN_BLOB_AREA_PX or len(best) < 5:
        return PupilResult.none("BLOB")
    (cx, cy), (w, h), angle = cv2.fitEllipse(best)
    area = cv2.contourArea(best)
    fill = area / max(np.pi * w * h / 4.0, 1e-6)
    confidence = float(np.clip(fill, 0.0, 1.0))
    return PupilResult(float(cx), float(cy), float(w), float(h), float(angle), confidence, "BLOB")

"""Dark-blob pupil detector: fixed threshold (the user's `algorithm.blob` settings), largest fitting blob."""

from __future__ import annotations

import cv2
import numpy as np

from app.camera.base import GrayImage
from app.config.models import BlobConfig
from app.tracking.pupil.ellipse import fit_ellipse, outline_confidence
from app.tracking.results import PupilResult


def detect_pupil_blob(gray: GrayImage, config: BlobConfig | None = None) -> PupilResult:
    """Pixels darker than `threshold`; the largest blob whose bounding box side is within [minsize, maxsize]
    (scaled from the legacy 240-px frame to this frame's size)."""
    config = config or BlobConfig()
    if gray.size == 0:
        return PupilResult.none("BLOB")
    scale = min(gray.shape) / 240.0
    min_side, max_side = config.minsize * scale, max(config.maxsize * scale * 2.0, 4.0)
    small = cv2.GaussianBlur(gray, (5, 5), 0)
    _, mask = cv2.threshold(small, config.threshold, 255, cv2.THRESH_BINARY_INV)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    fitting = [c for c in contours if len(c) >= 5 and min_side <= max(cv2.boundingRect(c)[2:]) <= max_side]
    best = max(fitting, key=cv2.contourArea, default=None)
    if best is None:
        return PupilResult.none("BLOB")
    moments = cv2.moments(best)
    if moments["m00"] <= 0:
        return PupilResult.none("BLOB")
    ellipse = fit_ellipse(best)
    (_, _), (w, h), angle = ellipse
    confidence = outline_confidence(gray, ellipse)
    cx, cy = moments["m10"] / moments["m00"], moments["m01"] / moments["m00"]
    return PupilResult(float(cx), float(cy), float(w), float(h), float(angle), float(np.clip(confidence, 0, 1)), "BLOB")

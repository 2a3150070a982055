"""Dev-only reference detectors (pupil-detectors' 2D detector, cheshm's PuRe), when installed."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from app.camera.base import GrayImage

RefDetector = Callable[[GrayImage], tuple[float, float] | None]


def reference_detectors() -> dict[str, RefDetector | None]:
    """Name -> detector (centre or None per frame), or None when its package is not installed."""
    found: dict[str, RefDetector | None] = {}
    try:
        detectors: Any = importlib.import_module("pupil_detectors")
        detector_2d = detectors.Detector2D()

        def pupil_labs_2d(gray: GrayImage) -> tuple[float, float] | None:
            result = detector_2d.detect(gray)
            if result["confidence"] <= 0:
                return None
            x, y = result["ellipse"]["center"]
            return float(x), float(y)

        found["pupil-labs 2D"] = pupil_labs_2d
    except ImportError:
        found["pupil-labs 2D"] = None
    try:
        pure: Any = importlib.import_module("cheshm.pupil_detectors.PuRe.core")

        def pure_detector(gray: GrayImage) -> tuple[float, float] | None:
            result = pure.detect_pupil(gray)
            if result is None:
                return None
            (x, y), _, _ = result["ellipse"]
            return float(x), float(y)

        found["PuRe (cheshm)"] = pure_detector
    except ImportError:
        found["PuRe (cheshm)"] = None
    return found

"""JPEG decoding shared by the camera readers."""

from __future__ import annotations

import cv2
import numpy as np

from app.camera.base import GrayImage


def decode_gray(jpeg: bytes) -> GrayImage | None:
    """Decode a JPEG straight to 8-bit grey (the trackers work on grey); None when it does not decode."""
    image = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    if image is None or image.ndim != 2 or image.size == 0:
        return None
    gray: GrayImage = np.asarray(image, dtype=np.uint8)
    return gray

"""Worker side of the previews (app.runtime.previews): the overlays drawn on a frame and the JPEG encoding.

Only the camera and tracker processes import this module: the main process, which relays the encoded images, never
loads OpenCV (about 16 MB of its memory).
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from app.runtime.previews import PreviewSlot

JPEG_QUALITY = 80


class PreviewPublisher:
    """Worker side: rate-limited encoding into a slot, only while it has viewers."""

    def __init__(self, slot: PreviewSlot, max_fps: float) -> None:
        self.slot = slot
        self.interval_s = 1.0 / max_fps if max_fps > 0 else 0.0
        self._last = -1e9
        self.encoded = 0

    def due(self, now: float) -> bool:
        return self.slot.wanted and now - self._last >= self.interval_s

    def publish(self, image: npt.NDArray[np.uint8], capture_ts: float, now: float) -> None:
        self._last = now
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if ok:
            self.slot.publish(encoded.tobytes(), capture_ts)
            self.encoded += 1


def draw_roi(gray: npt.NDArray[np.uint8], roi: tuple[int, int, int, int] | None) -> npt.NDArray[np.uint8]:
    """The raw frame in colour with the ROI rectangle (x, y, w, h) drawn."""
    image = np.asarray(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
    if roi is not None:
        x, y, w, h = roi
        cv2.rectangle(image, (x, y), (x + w - 1, y + h - 1), (0, 200, 255), 1)
    return image


def draw_tracking(
    gray: npt.NDArray[np.uint8],
    pupil_x: float,
    pupil_y: float,
    ellipse_w: float,
    ellipse_h: float,
    angle_deg: float,
    confidence: float,
    openness: float,
) -> npt.NDArray[np.uint8]:
    """The tracked (ROI) frame with the pupil ellipse, its centre, confidence and openness."""
    image = np.asarray(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
    if confidence > 0 and np.isfinite(pupil_x):
        centre = (float(pupil_x), float(pupil_y))
        cv2.ellipse(image, (centre, (float(ellipse_w), float(ellipse_h)), float(angle_deg)), (0, 255, 0), 1)
        cv2.drawMarker(image, (round(pupil_x), round(pupil_y)), (0, 0, 255), cv2.MARKER_CROSS, 8, 1)
    scale = max(0.3, image.shape[1] / 600)
    cv2.putText(
        image,
        f"conf {confidence:.2f} open {openness:.2f}",
        (4, int(14 * scale / 0.4)),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (255, 255, 0),
        1,
        cv2.LINE_AA,
    )
    return image

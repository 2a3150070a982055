"""Frame preprocessing done once, in the camera process: rotation, optional image flips, ROI crop (pure).

Order: rotate (about the frame centre), flip, crop. The ROI is given in the rotated frame's pixels,
half-open `[x, x + w) x [y, y + h)`; w or h of 0 means the whole frame. An ROI reaching outside the
frame is clamped and reported, never an error.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from app.camera.base import GrayImage
from app.config.models import CameraConfig

RIGHT_ANGLE_ROTATIONS = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}


@dataclass(frozen=True, slots=True)
class PreprocessInfo:
    rotated: GrayImage  # the full frame after rotation and flips (what the camera preview shows)
    roi: tuple[int, int, int, int]  # the effective ROI (x, y, w, h) in the rotated frame
    roi_clamped: bool  # the configured ROI reached outside the frame and was clamped


def clamp_roi(x: int, y: int, w: int, h: int, width: int, height: int) -> tuple[tuple[int, int, int, int], bool]:
    """The ROI inside a width x height frame; (0, 0, 0, 0)-sized means the whole frame."""
    if w <= 0 or h <= 0:
        return (0, 0, width, height), False
    x0, y0 = min(max(x, 0), width - 1), min(max(y, 0), height - 1)
    x1, y1 = min(x + w, width), min(y + h, height)
    clamped = (x0, y0, x1 - x0, y1 - y0) != (x, y, w, h)
    return (x0, y0, max(1, x1 - x0), max(1, y1 - y0)), clamped


class Preprocessor:
    def __init__(
        self,
        rotation_deg: float = 0.0,
        flip_x: bool = False,
        flip_y: bool = False,
        roi_x: int = 0,
        roi_y: int = 0,
        roi_w: int = 0,
        roi_h: int = 0,
    ) -> None:
        self.rotation_deg = rotation_deg % 360.0
        self.flip_x = flip_x
        self.flip_y = flip_y
        self.roi_request = (roi_x, roi_y, roi_w, roi_h)
        self._matrix_for: tuple[int, int] | None = None
        self._matrix: npt.NDArray[np.float64] | None = None

    @classmethod
    def from_config(cls, camera: CameraConfig) -> Preprocessor:
        # The config's flip_x_axis/flip_y_axis mirror the gaze axes (in the tracking pipeline), not the image.
        return cls(camera.rotation, False, False, camera.roi_x, camera.roi_y, camera.roi_w, camera.roi_h)

    def rotate(self, gray: GrayImage) -> GrayImage:
        angle = self.rotation_deg
        if angle == 0.0:
            rotated = gray
        elif angle in RIGHT_ANGLE_ROTATIONS:
            rotated = np.asarray(cv2.rotate(gray, RIGHT_ANGLE_ROTATIONS[int(angle)]), dtype=np.uint8)
        else:
            height, width = gray.shape[:2]
            if self._matrix_for != (width, height):
                centre = ((width - 1) / 2.0, (height - 1) / 2.0)
                self._matrix = np.asarray(cv2.getRotationMatrix2D(centre, angle, 1.0), dtype=np.float64)
                self._matrix_for = (width, height)
            assert self._matrix is not None
            rotated = np.asarray(
                cv2.warpAffine(
                    gray, self._matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
                ),
                dtype=np.uint8,
            )
        if self.flip_x and self.flip_y:
            rotated = np.asarray(cv2.flip(rotated, -1), dtype=np.uint8)
        elif self.flip_x:
            rotated = np.asarray(cv2.flip(rotated, 1), dtype=np.uint8)
        elif self.flip_y:
            rotated = np.asarray(cv2.flip(rotated, 0), dtype=np.uint8)
        return rotated

    def apply(self, gray: GrayImage) -> tuple[GrayImage, PreprocessInfo]:
        """The ROI of the rotated frame (a view, no copy) and what was done."""
        rotated = self.rotate(gray)
        height, width = rotated.shape[:2]
        roi, clamped = clamp_roi(*self.roi_request, width, height)
        x, y, w, h = roi
        return rotated[y : y + h, x : x + w], PreprocessInfo(rotated, roi, clamped)

    def roi_to_rotated(self, x: float, y: float, info: PreprocessInfo) -> tuple[float, float]:
        """A point in ROI pixels to the rotated frame's pixels."""
        return x + info.roi[0], y + info.roi[1]

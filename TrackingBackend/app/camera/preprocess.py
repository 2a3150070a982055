"""Frame preprocessing before tracking: optional image flips, rotation, then the ROI crop (pure).

Order: flip (raw frame) -> rotate about the frame centre by any angle, keeping the frame size -> crop the ROI,
whose coordinates are in the rotated frame (config `roi_*`: "pixels of the rotated frame").
- Angles are degrees, counter-clockwise as displayed (OpenCV's convention). 0 and 180 use cv2.rotate; 90 and
  270 too when the frame is square (a non-square frame keeps its size, so it goes through warpAffine). Other
  angles use cv2.warpAffine with a matrix cached per frame size; the corners outside the rotated frame are
  filled slightly brighter than the frame's mean, so they never look like a dark pupil.
- The ROI is a half-open rectangle [x0, x1) x [y0, y1); width/height 0 = the whole frame. An ROI that sticks
  out of the frame is clamped to it and one entirely outside falls back to the whole frame; both are reported
  in `PreprocessInfo.roi_clamped`, never raised.
- Point coordinates put pixel centres on integers. `PreprocessInfo` carries the affine maps both ways, so a
  point found in the ROI maps back to the raw frame (previews, analysis CSV) without the Preprocessor.
- The returned ROI image is a view into the rotated frame (or into the input when nothing rotates or flips):
  copy it before the input buffer is reused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from app.camera.base import GrayImage

Affine = tuple[float, float, float, float, float, float]  # row-major 2x3
# How much brighter than the frame's mean the area uncovered by a rotation is filled.
ROTATION_FILL_OFFSET = 10.0
_FAST_ANGLE_TOLERANCE_DEG = 1e-9


@dataclass(frozen=True, slots=True)
class RoiRect:
    """A half-open pixel rectangle [x0, x1) x [y0, y1)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


@dataclass(frozen=True, slots=True)
class PreprocessInfo:
    frame_width_px: int  # of the raw (and the rotated) frame
    frame_height_px: int
    roi: RoiRect  # the effective ROI, in rotated-frame pixels
    roi_clamped: bool  # the configured ROI did not fit the frame and was clamped (or replaced by the frame)
    raw_to_rotated: Affine  # flips and rotation: raw frame point -> rotated frame point
    rotated_to_raw: Affine

    def roi_to_raw(self, x_px: float, y_px: float) -> tuple[float, float]:
        """A point in ROI coordinates -> the same point in raw-frame coordinates."""
        points = map_roi_to_raw(np.array([[x_px, y_px]], dtype=np.float64), self)
        return float(points[0, 0]), float(points[0, 1])

    def raw_to_roi(self, x_px: float, y_px: float) -> tuple[float, float]:
        points = map_raw_to_roi(np.array([[x_px, y_px]], dtype=np.float64), self)
        return float(points[0, 0]), float(points[0, 1])


def _apply_affine(points: npt.ArrayLike, affine: Affine) -> npt.NDArray[np.float64]:
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    matrix = np.asarray(affine, dtype=np.float64).reshape(2, 3)
    result: npt.NDArray[np.float64] = pts @ matrix[:, :2].T + matrix[:, 2]
    return result


def map_roi_to_raw(points_px: npt.ArrayLike, info: PreprocessInfo) -> npt.NDArray[np.float64]:
    """N x 2 points in ROI coordinates -> raw-frame coordinates."""
    offset = np.array([info.roi.x0, info.roi.y0], dtype=np.float64)
    pts = np.asarray(points_px, dtype=np.float64).reshape(-1, 2) + offset
    return _apply_affine(pts, info.rotated_to_raw)


def map_raw_to_roi(points_px: npt.ArrayLike, info: PreprocessInfo) -> npt.NDArray[np.float64]:
    """N x 2 points in raw-frame coordinates -> ROI coordinates (may fall outside the ROI)."""
    rotated = _apply_affine(points_px, info.raw_to_rotated)
    offset: npt.NDArray[np.float64] = rotated - (info.roi.x0, info.roi.y0)
    return offset


def _compose(outer: npt.NDArray[np.float64], inner: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The 2x3 affine `outer ∘ inner`."""
    full_outer = np.vstack([outer, [0.0, 0.0, 1.0]])
    full_inner = np.vstack([inner, [0.0, 0.0, 1.0]])
    composed: npt.NDArray[np.float64] = (full_outer @ full_inner)[:2]
    return composed


def _as_affine(matrix: npt.NDArray[np.float64]) -> Affine:
    m = [float(v) for v in matrix.reshape(-1)]
    return (m[0], m[1], m[2], m[3], m[4], m[5])


@dataclass(frozen=True, slots=True)
class _SizePlan:
    """Everything that depends only on the frame size, computed once per size."""

    rotate_code: int | None  # cv2.rotate fast path, or None
    rotation_matrix: npt.NDArray[np.float64] | None  # raw -> ROI warp for the general path, else None
    info: PreprocessInfo


class Preprocessor:
    """Flips, rotation and ROI crop with fixed settings; build a new one when the settings change."""

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
        if not math.isfinite(rotation_deg):
            raise ValueError(f"rotation_deg must be finite, got {rotation_deg!r}")
        self.rotation_deg = rotation_deg % 360.0
        self.flip_x = flip_x
        self.flip_y = flip_y
        self.roi_x, self.roi_y, self.roi_w, self.roi_h = roi_x, roi_y, roi_w, roi_h
        self._plans: dict[tuple[int, int], _SizePlan] = {}

    def apply(self, gray: GrayImage) -> tuple[GrayImage, PreprocessInfo]:
        height, width = gray.shape[:2]
        plan = self._plans.get((width, height))
        if plan is None:
            plan = self._plan(width, height)
            self._plans[(width, height)] = plan
        image = gray
        if self.flip_x or self.flip_y:
            code = -1 if self.flip_x and self.flip_y else (1 if self.flip_x else 0)
            image = np.asarray(cv2.flip(image, code), dtype=np.uint8)
        if plan.rotate_code is not None:
            image = np.asarray(cv2.rotate(image, plan.rotate_code), dtype=np.uint8)
        elif plan.rotation_matrix is not None:
            # Warp straight into the ROI: pixels outside it would be thrown away anyway.
            fill = min(255.0, float(cv2.mean(image)[0]) + ROTATION_FILL_OFFSET)
            roi = plan.info.roi
            warped = cv2.warpAffine(
                image,
                plan.rotation_matrix,
                (roi.width, roi.height),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=fill,
            )
            cropped: GrayImage = np.asarray(warped, dtype=np.uint8)
            return cropped, plan.info
        roi = plan.info.roi
        out: GrayImage = image[roi.y0 : roi.y1, roi.x0 : roi.x1]
        return out, plan.info

    def _plan(self, width: int, height: int) -> _SizePlan:
        flip = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        if self.flip_x:
            flip = _compose(np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0]]), flip)
        if self.flip_y:
            flip = _compose(np.array([[1.0, 0.0, 0.0], [0.0, -1.0, height - 1.0]]), flip)
        angle = self.rotation_deg
        # Rotating about the centre of the pixel grid makes 90/180/270 exact pixel permutations.
        centre = ((width - 1) / 2.0, (height - 1) / 2.0)
        rotation = np.asarray(cv2.getRotationMatrix2D(centre, angle, 1.0), dtype=np.float64)
        rotate_code: int | None = None
        rotation_matrix: npt.NDArray[np.float64] | None = rotation
        square = width == height
        if _near(angle, 0.0) or _near(angle, 360.0):
            rotation = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
            rotation_matrix = None
        elif _near(angle, 180.0):
            rotate_code, rotation_matrix = cv2.ROTATE_180, None
        elif _near(angle, 90.0) and square:
            rotate_code, rotation_matrix = cv2.ROTATE_90_COUNTERCLOCKWISE, None
        elif _near(angle, 270.0) and square:
            rotate_code, rotation_matrix = cv2.ROTATE_90_CLOCKWISE, None
        if rotate_code is not None:
            rotation = np.rint(rotation)  # exact integer permutation
        raw_to_rotated = _compose(rotation, flip)
        rotated_to_raw = np.asarray(cv2.invertAffineTransform(raw_to_rotated), dtype=np.float64)
        roi, clamped = clamp_roi(self.roi_x, self.roi_y, self.roi_w, self.roi_h, width, height)
        if rotation_matrix is not None:
            rotation_matrix = _compose(np.array([[1.0, 0.0, -roi.x0], [0.0, 1.0, -roi.y0]]), rotation_matrix)
        info = PreprocessInfo(
            frame_width_px=width,
            frame_height_px=height,
            roi=roi,
            roi_clamped=clamped,
            raw_to_rotated=_as_affine(raw_to_rotated),
            rotated_to_raw=_as_affine(rotated_to_raw),
        )
        return _SizePlan(rotate_code, rotation_matrix, info)


def _near(angle_deg: float, target_deg: float) -> bool:
    return abs(angle_deg - target_deg) <= _FAST_ANGLE_TOLERANCE_DEG


def clamp_roi(x: int, y: int, w: int, h: int, frame_w: int, frame_h: int) -> tuple[RoiRect, bool]:
    """The ROI as it fits the frame, and whether it had to be changed (w or h 0 = whole width or height)."""
    x0, x1 = (0, frame_w) if w <= 0 else (x, x + w)
    y0, y1 = (0, frame_h) if h <= 0 else (y, y + h)
    cx0, cx1 = min(max(x0, 0), frame_w), min(max(x1, 0), frame_w)
    cy0, cy1 = min(max(y0, 0), frame_h), min(max(y1, 0), frame_h)
    if cx1 <= cx0 or cy1 <= cy0:
        return RoiRect(0, 0, frame_w, frame_h), True
    clamped = (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1)
    return RoiRect(cx0, cy0, cx1, cy1), clamped

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
- Point coordinates put pixel centres on integers. `PreprocessInfo.geometry` carries the affine maps both
  ways, so a point found in the ROI maps back to the raw frame (previews, analysis CSV) without the
  Preprocessor; the geometry is computed once per frame size and shared by all frames of that size.
- The returned ROI image is a view into `info.rotated`, the full rotated frame (which is the input itself when
  nothing rotates or flips): copy it before the input buffer is reused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import cv2
import numpy as np
import numpy.typing as npt

from app.camera.base import GrayImage

if TYPE_CHECKING:
    from app.config.models import CameraConfig

Affine = tuple[float, float, float, float, float, float]  # row-major 2x3
# How much brighter than the frame's mean the area uncovered by a rotation is filled.
ROTATION_FILL_OFFSET = 10.0
_FAST_ANGLE_TOLERANCE_DEG = 1e-9


class RoiRect(NamedTuple):
    """A half-open pixel rectangle [x, x + w) x [y, y + h); unpacks as (x, y, w, h) like the config's roi_*."""

    x: int
    y: int
    w: int
    h: int

    @property
    def x0(self) -> int:
        return self.x

    @property
    def y0(self) -> int:
        return self.y

    @property
    def x1(self) -> int:
        return self.x + self.w

    @property
    def y1(self) -> int:
        return self.y + self.h


@dataclass(frozen=True, slots=True)
class FrameGeometry:
    """What depends only on the settings and the frame size: the ROI and the point maps both ways."""

    frame_width_px: int  # of the raw (and the rotated) frame
    frame_height_px: int
    roi: RoiRect  # the effective ROI, in rotated-frame pixels
    roi_clamped: bool  # the configured ROI did not fit the frame and was clamped (or replaced by the frame)
    raw_to_rotated: Affine  # flips and rotation: raw frame point -> rotated frame point
    rotated_to_raw: Affine


@dataclass(frozen=True, slots=True)
class PreprocessInfo:
    rotated: GrayImage  # the full frame after flips and rotation (what the camera preview shows)
    geometry: FrameGeometry

    @property
    def roi(self) -> RoiRect:
        return self.geometry.roi

    @property
    def roi_clamped(self) -> bool:
        return self.geometry.roi_clamped

    def roi_to_raw(self, x_px: float, y_px: float) -> tuple[float, float]:
        """A point in ROI coordinates -> the same point in raw-frame coordinates."""
        points = map_roi_to_raw(np.array([[x_px, y_px]], dtype=np.float64), self.geometry)
        return float(points[0, 0]), float(points[0, 1])

    def raw_to_roi(self, x_px: float, y_px: float) -> tuple[float, float]:
        points = map_raw_to_roi(np.array([[x_px, y_px]], dtype=np.float64), self.geometry)
        return float(points[0, 0]), float(points[0, 1])


def _apply_affine(points: npt.ArrayLike, affine: Affine) -> npt.NDArray[np.float64]:
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    matrix = np.asarray(affine, dtype=np.float64).reshape(2, 3)
    result: npt.NDArray[np.float64] = pts @ matrix[:, :2].T + matrix[:, 2]
    return result


def map_roi_to_raw(points_px: npt.ArrayLike, info: PreprocessInfo | FrameGeometry) -> npt.NDArray[np.float64]:
    """N x 2 points in ROI coordinates -> raw-frame coordinates."""
    geometry = info.geometry if isinstance(info, PreprocessInfo) else info
    offset = np.array([geometry.roi.x, geometry.roi.y], dtype=np.float64)
    pts = np.asarray(points_px, dtype=np.float64).reshape(-1, 2) + offset
    return _apply_affine(pts, geometry.rotated_to_raw)


def map_raw_to_roi(points_px: npt.ArrayLike, info: PreprocessInfo | FrameGeometry) -> npt.NDArray[np.float64]:
    """N x 2 points in raw-frame coordinates -> ROI coordinates (may fall outside the ROI)."""
    geometry = info.geometry if isinstance(info, PreprocessInfo) else info
    rotated = _apply_affine(points_px, geometry.raw_to_rotated)
    offset: npt.NDArray[np.float64] = rotated - np.array([geometry.roi.x, geometry.roi.y], dtype=np.float64)
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
    rotation_matrix: npt.NDArray[np.float64] | None  # warpAffine path, or None
    geometry: FrameGeometry


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

    @classmethod
    def from_config(cls, camera: CameraConfig, *, image_flips: bool = False) -> Preprocessor:
        """The camera section's rotation and ROI. Its flip_x_axis/flip_y_axis mirror the gaze axes in the
        tracking pipeline, so they flip the image here only when `image_flips` is asked for."""
        flip_x = camera.flip_x_axis if image_flips else False
        flip_y = camera.flip_y_axis if image_flips else False
        return cls(camera.rotation, flip_x, flip_y, camera.roi_x, camera.roi_y, camera.roi_w, camera.roi_h)

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
            fill = min(255.0, float(cv2.mean(image)[0]) + ROTATION_FILL_OFFSET)
            warped = cv2.warpAffine(
                image,
                plan.rotation_matrix,
                (width, height),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=fill,
            )
            image = np.asarray(warped, dtype=np.uint8)
        roi = plan.geometry.roi
        out: GrayImage = image[roi.y : roi.y1, roi.x : roi.x1]
        return out, PreprocessInfo(image, plan.geometry)

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
        geometry = FrameGeometry(
            frame_width_px=width,
            frame_height_px=height,
            roi=roi,
            roi_clamped=clamped,
            raw_to_rotated=_as_affine(raw_to_rotated),
            rotated_to_raw=_as_affine(rotated_to_raw),
        )
        return _SizePlan(rotate_code, rotation_matrix, geometry)


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
    return RoiRect(cx0, cy0, cx1 - cx0, cy1 - cy0), clamped

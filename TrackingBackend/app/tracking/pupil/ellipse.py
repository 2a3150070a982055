"""Helpers shared by the pupil detectors: ellipse fitting, point distance, outline contrast, shrinking."""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

GrayU8 = npt.NDArray[np.uint8]
Ellipse = tuple[tuple[float, float], tuple[float, float], float]

# Outline-contrast votes (PuRe): a point on the ellipse votes when its outside is this much brighter.
OUTLINE_BIAS_GREY = 5.0
OUTLINE_SAMPLES = 32
MIN_SEEN_FRACTION = 0.5
_ANGLES = np.linspace(0.0, 2.0 * np.pi, OUTLINE_SAMPLES, endpoint=False)
_COS, _SIN = np.cos(_ANGLES), np.sin(_ANGLES)


def fit_ellipse(points: npt.NDArray[np.generic]) -> Ellipse:
    """`cv2.fitEllipse` with plain float results: ((cx, cy), (w, h), angle_deg)."""
    (cx, cy), (w, h), angle = cv2.fitEllipse(np.asarray(points, np.float32).reshape(-1, 1, 2))
    return (float(cx), float(cy)), (float(w), float(h)), float(angle)


def cos_sin_deg(angle_deg: float) -> tuple[float, float]:
    """(cos, sin) of an ellipse angle in degrees, as plain floats (numpy's scalar functions cost 10x here)."""
    angle_rad = math.radians(angle_deg)
    return math.cos(angle_rad), math.sin(angle_rad)


def as_u8(image: npt.NDArray[np.generic]) -> GrayU8:
    result: GrayU8 = np.asarray(image, np.uint8)
    return result


def shrunk(gray: GrayU8, side_px: int) -> tuple[GrayU8, int]:
    """`gray` shrunk by a whole factor to about `side_px` on its shorter side (area-averaged), and the factor."""
    height, width = gray.shape[:2]
    scale = max(1, round(min(height, width) / side_px))
    if scale == 1:
        return gray, 1
    # Whole blocks only (a partial one at the edge would make OpenCV resample by a fractional factor), and
    # halvings first: OpenCV's 2x area shrink is vectorised, its other whole factors are not (a 4x shrink of a
    # 240x240 frame in two halvings costs a quarter; each halving rounds, by at most half a grey level).
    small, left = gray[: height // scale * scale, : width // scale * scale], scale
    while left % 2 == 0:
        small = as_u8(cv2.resize(small, (small.shape[1] // 2, small.shape[0] // 2), interpolation=cv2.INTER_AREA))
        left //= 2
    if left > 1:
        small = as_u8(cv2.resize(small, (small.shape[1] // left, small.shape[0] // left), interpolation=cv2.INTER_AREA))
    return small, scale


def ellipse_distance_px(points: npt.NDArray[np.floating[Any]], ellipse: Ellipse) -> npt.NDArray[np.float64]:
    """Approximate geometric distance of points to an ellipse (radial, scaled by the mean semi-axis)."""
    distance: npt.NDArray[np.float64] = np.abs(signed_ellipse_distance_px(points, ellipse))
    return distance


def signed_ellipse_distance_px(points: npt.NDArray[np.floating[Any]], ellipse: Ellipse) -> npt.NDArray[np.float64]:
    """`ellipse_distance_px` with a sign: negative inside the ellipse, positive outside."""
    (cx, cy), (w, h), angle_deg = ellipse
    a, b = max(w / 2.0, 1e-3), max(h / 2.0, 1e-3)
    cos_a, sin_a = cos_sin_deg(angle_deg)
    dx, dy = points[:, 0] - cx, points[:, 1] - cy
    u = (dx * cos_a + dy * sin_a) / a
    v = (-dx * sin_a + dy * cos_a) / b
    distance: npt.NDArray[np.float64] = np.asarray((np.hypot(u, v) - 1.0) * 0.5 * (a + b), np.float64)
    return distance


def median(values: npt.NDArray[np.generic]) -> float:
    """The (upper) median, without np.median's overhead (it matters at a few hundred calls per frame)."""
    flat = values.ravel().copy()  # partitioned in place (the method skips np.partition's dispatch)
    middle = flat.size // 2
    flat.partition(middle)
    return float(flat[middle])


def exact_median(values: npt.NDArray[np.generic]) -> float:
    """`np.median`'s value (the mean of the middle two of an even count), without its overhead."""
    flat = values.ravel().copy()
    middle = flat.size // 2
    if flat.size % 2:
        flat.partition(middle)
        return float(flat[middle])
    flat.partition((middle - 1, middle))
    return (float(flat[middle - 1]) + float(flat[middle])) / 2.0


def outline_confidence(gray: GrayU8, ellipse: Ellipse) -> float:
    """Fraction of outline points whose outside is brighter than the inside (PuRe's outline contrast)."""
    values = _outline_samples(gray, ellipse)
    if values is None:
        return 0.0
    return int(np.count_nonzero(values[1] - values[0] > OUTLINE_BIAS_GREY)) / int(values.shape[1])


def visible_outline_score(gray: GrayU8, ellipse: Ellipse, dark_level: float) -> float:
    """Outline contrast counted only where the inside is pupil-dark (below `dark_level`): a lid or lashes over
    part of the outline neither vote for nor against the ellipse. At least half the outline must be seen."""
    values = _outline_samples(gray, ellipse)
    if values is None:
        return 0.0
    seen = values[0] < dark_level
    votes = int(np.count_nonzero(seen & (values[1] - values[0] > OUTLINE_BIAS_GREY)))
    return votes / max(float(np.count_nonzero(seen)), MIN_SEEN_FRACTION * OUTLINE_SAMPLES)


def _outline_samples(gray: GrayU8, ellipse: Ellipse) -> npt.NDArray[np.int16] | None:
    """Grey levels just inside (row 0) and just outside (row 1) the ellipse at OUTLINE_SAMPLES angles."""
    (cx, cy), (w, h), angle_deg = ellipse
    a, b = w / 2.0, h / 2.0
    if a < 1.0 or b < 1.0:
        return None
    height, width = gray.shape
    cos_a, sin_a = cos_sin_deg(angle_deg)
    offset_px = max(1.5, 0.15 * min(a, b))
    scales = (
        np.array([[max(a - offset_px, 0.5)], [a + offset_px]]),
        np.array([[max(b - offset_px, 0.5)], [b + offset_px]]),
    )
    ux, uy = scales[0] * _COS, scales[1] * _SIN
    # np.minimum/np.maximum: np.clip's Python-level checks cost 3x the clipping on these 64 points.
    xi = np.minimum(np.maximum((cx + ux * cos_a - uy * sin_a + 0.5).astype(np.int64), 0), width - 1)
    yi = np.minimum(np.maximum((cy + ux * sin_a + uy * cos_a + 0.5).astype(np.int64), 0), height - 1)
    values: npt.NDArray[np.int16] = gray[yi, xi].astype(np.int16)
    return values

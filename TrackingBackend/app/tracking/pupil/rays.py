"""Starburst edge fit: rays from inside the pupil to its rim, sub-pixel edges, a robust ellipse fit.

Each ray stops at the first crossing of the pupil/iris mid-level; the edge is where the profile rises
fastest near that crossing (so the result does not hang on the level chosen). Rays whose crossing sits next
to a glint, and rays whose outside does not look like iris a few pixels on (a lid chord: lid margin then
skin; a lash: dark), give no point: the ellipse is fitted to the pupil/iris border alone, which keeps a
partly hidden pupil's centre where the whole pupil's centre is.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import numpy.typing as npt

from app.tracking.pupil.ellipse import Ellipse, GrayU8, ellipse_distance_px, fit_ellipse, median

RAY_COUNT = 64
RAY_STEP_PX = 0.5
RAY_BLUR_KSIZE = 5
# Rays reach this x the initial semi-major axis, plus a margin.
RAY_REACH = 1.6
RAY_REACH_MARGIN_PX = 4.0
RAY_EDGE_FRACTION = 0.45
# Half-width of the search for the steepest rise around the mid-level crossing, in samples.
RAY_GRADIENT_WINDOW = 4
# Samples this far past the edge must all be within IRIS_TOLERANCE x (iris - pupil) of the iris level.
RAY_IRIS_STEPS_PX = (1.5, 2.5, 3.5, 5.0)
RAY_IRIS_TOLERANCE = 0.4
RAY_GLINT_GAP_PX = 1.5
RAY_MIN_POINTS = 10
INLIER_PX = 1.0
OUTLIER_MEDIANS = 2.5

_ANGLES = np.linspace(0.0, 2.0 * np.pi, RAY_COUNT, endpoint=False)
_RAY_COS, _RAY_SIN = np.cos(_ANGLES), np.sin(_ANGLES)
_ROWS = np.arange(RAY_COUNT)
_WINDOW = np.arange(-RAY_GRADIENT_WINDOW - 1, RAY_GRADIENT_WINDOW + 2)
_IRIS_OFFSETS = np.asarray([round(step / RAY_STEP_PX) for step in RAY_IRIS_STEPS_PX])
_GLINT_GAP = round(RAY_GLINT_GAP_PX / RAY_STEP_PX)
_GLINT_OFFSETS = np.arange(-_GLINT_GAP, _GLINT_GAP + 1)


@lru_cache(maxsize=64)
def _ray_offsets(sample_count: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    steps = np.arange(sample_count, dtype=np.float64) * RAY_STEP_PX
    return (
        np.asarray(np.outer(_RAY_COS, steps), np.float32),
        np.asarray(np.outer(_RAY_SIN, steps), np.float32),
    )


def fit_rays(
    roi: GrayU8,
    start: tuple[float, float],
    reach_px: float,
    inside_level: float,
    iris_level: float,
    glints: GrayU8,
) -> Ellipse | None:
    """The pupil ellipse from rays cast from `start` (inside the pupil) in `roi`; None when too few rays
    find an iris-bordered edge. `glints` marks (dilated) glint pixels.

    A first pass from `start` only re-centres (plain level crossings, one fit); the second, from that centre,
    hits the rim square on and gives the result.
    """
    contrast = iris_level - inside_level
    if contrast <= 0:
        return None
    smooth = np.asarray(cv2.GaussianBlur(roi, (RAY_BLUR_KSIZE, RAY_BLUR_KSIZE), 0), np.float32)
    has_glints = bool(glints.any())
    if has_glints:
        smooth[glints > 0] = inside_level  # glints are inside the pupil or on its rim: never a crossing
    near_glint = glints if has_glints else None
    level = inside_level + RAY_EDGE_FRACTION * contrast
    sample_count = int((RAY_REACH * reach_px + RAY_REACH_MARGIN_PX) / RAY_STEP_PX)
    offsets_x, offsets_y = _ray_offsets(sample_count)
    rim = _rim(smooth, start, offsets_x, offsets_y, level, iris_level, RAY_IRIS_TOLERANCE * contrast, near_glint, False)
    if rim is None:
        return None
    (cx, cy), _, _ = fit_ellipse(rim)
    height, width = smooth.shape
    if not (0 <= cx < width and 0 <= cy < height and smooth[int(cy), int(cx)] < level):
        cx, cy = start
    rim = _rim(
        smooth, (cx, cy), offsets_x, offsets_y, level, iris_level, RAY_IRIS_TOLERANCE * contrast, near_glint, True
    )
    return None if rim is None else _robust_fit(rim)


def _rim(
    smooth: npt.NDArray[np.float32],
    centre: tuple[float, float],
    offsets_x: npt.NDArray[np.float32],
    offsets_y: npt.NDArray[np.float32],
    level: float,
    iris_level: float,
    tolerance: float,
    glints: GrayU8 | None,
    steepest: bool,
) -> npt.NDArray[np.float32] | None:
    """Rim points (N x 2, float32) on the rays from `centre`; None when fewer than RAY_MIN_POINTS."""
    cx, cy = centre
    map_x, map_y = offsets_x + np.float32(cx), offsets_y + np.float32(cy)
    profiles = np.asarray(
        cv2.remap(smooth, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), np.float32
    )
    last = profiles.shape[1] - 1
    first = np.argmax(profiles >= level, axis=1)
    crossing = first[:, None]
    # The crossing must be a real one, every sample a few pixels on iris-grey, and no glint next to it.
    outside = profiles[_ROWS[:, None], np.minimum(crossing + _IRIS_OFFSETS, last)]
    ok = (first > 0) & (np.abs(outside - iris_level).max(axis=1) <= tolerance)
    if glints is not None:
        near = cv2.remap(glints, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
        ok &= ~near[_ROWS[:, None], np.minimum(np.maximum(crossing + _GLINT_OFFSETS, 0), last)].any(axis=1)
    rays = np.flatnonzero(ok)
    if len(rays) < RAY_MIN_POINTS:
        return None
    profiles, first = profiles[rays], first[rays]
    if steepest:
        dist = _steepest_rise_px(profiles, first)
    else:
        rows = np.arange(len(rays))
        before, after = profiles[rows, first - 1], profiles[rows, first]
        dist = (first - 1 + (level - before) / np.maximum(after - before, 1e-3)) * RAY_STEP_PX
    points = np.empty((len(rays), 2), np.float32)
    points[:, 0] = cx + _RAY_COS[rays] * dist
    points[:, 1] = cy + _RAY_SIN[rays] * dist
    return points


def _steepest_rise_px(profiles: npt.NDArray[np.float32], crossing: npt.NDArray[np.intp]) -> npt.NDArray[np.float64]:
    """Distance along each ray of the steepest rise within the window around its crossing, sub-sample."""
    last = profiles.shape[1] - 1
    # Samples crossing - W - 1 .. crossing + W + 1: the slopes between them, one extra on each side for the
    # parabola through the peak and its neighbours.
    index = np.minimum(np.maximum(crossing[:, None] + _WINDOW, 0), last)
    rows = np.arange(len(crossing))
    values = profiles[rows[:, None], index]
    slope = values[:, 1:] - values[:, :-1]  # slope[:, j] lies between samples index[:, j] and index[:, j + 1]
    peak = np.argmax(slope[:, 1:-1], axis=1) + 1
    left, mid, right = slope[rows, peak - 1], slope[rows, peak], slope[rows, peak + 1]
    curvature = left - 2.0 * mid + right
    peaked = curvature < 0  # else the rise is flat-topped: no sub-sample shift
    shift = np.where(peaked, 0.5 * (left - right) / np.where(peaked, curvature, -1.0), 0.0)
    shift = np.minimum(np.maximum(shift, -0.5), 0.5)
    distance: npt.NDArray[np.float64] = (index[rows, peak] + 0.5 + shift) * RAY_STEP_PX
    return distance


def _robust_fit(points: npt.NDArray[np.float32]) -> Ellipse:
    """Least-squares ellipse, refitted without the points far from it (a lash, a shadow edge)."""
    ellipse = fit_ellipse(points)
    for _ in range(2):
        distance = ellipse_distance_px(points, ellipse)
        keep = distance < max(INLIER_PX, OUTLIER_MEDIANS * median(distance))
        kept = int(np.count_nonzero(keep))
        if kept < RAY_MIN_POINTS or kept == len(points):
            break
        points = points[keep]
        ellipse = fit_ellipse(points)
    return ellipse

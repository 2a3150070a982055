"""Starburst edge fit: rays from inside the pupil to its rim, sub-pixel edges, a robust ellipse fit.

Each ray stops at the first crossing of the pupil/iris mid-level; the edge is where the profile rises
fastest near that crossing (so the result does not hang on the level chosen). Rays whose crossing sits next
to a glint, and rays whose outside does not look like iris a few pixels on (a lid chord: lid margin then
skin; a lash: dark), give no point: the ellipse is fitted to the pupil/iris border alone, which keeps a
partly hidden pupil's centre where the whole pupil's centre is.
"""

from __future__ import annotations

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
RAY_EDGE_FRACTION = 0.5
# Half-width of the search for the steepest rise around the mid-level crossing, in samples.
RAY_GRADIENT_WINDOW = 4
# Samples this far past the edge must all be within IRIS_TOLERANCE x (iris - pupil) of the iris level.
RAY_IRIS_STEPS_PX = (1.5, 2.5, 3.5, 5.0)
RAY_IRIS_TOLERANCE = 0.35
RAY_GLINT_GAP_PX = 1.5
RAY_MIN_POINTS = 10
RAY_PASSES = 2
INLIER_PX = 1.0
OUTLIER_MEDIANS = 2.5

_ANGLES = np.linspace(0.0, 2.0 * np.pi, RAY_COUNT, endpoint=False)
_RAY_COS, _RAY_SIN = np.cos(_ANGLES)[:, None], np.sin(_ANGLES)[:, None]
_WINDOW = np.arange(-RAY_GRADIENT_WINDOW - 1, RAY_GRADIENT_WINDOW + 2)[None, :]


def fit_rays(
    roi: GrayU8,
    start: tuple[float, float],
    reach_px: float,
    inside_level: float,
    iris_level: float,
    glints: GrayU8,
) -> Ellipse | None:
    """The pupil ellipse from rays cast from `start` (inside the pupil) in `roi`; None when too few rays
    find an iris-bordered edge. `glints` marks (dilated) glint pixels."""
    contrast = iris_level - inside_level
    if contrast <= 0:
        return None
    smooth = cv2.GaussianBlur(roi, (RAY_BLUR_KSIZE, RAY_BLUR_KSIZE), 0).astype(np.float32)
    has_glints = bool(glints.any())
    if has_glints:
        smooth[glints > 0] = inside_level  # glints are inside the pupil or on its rim: never a crossing
    level = inside_level + RAY_EDGE_FRACTION * contrast
    sample_count = int((RAY_REACH * reach_px + RAY_REACH_MARGIN_PX) / RAY_STEP_PX)
    steps = (np.arange(sample_count, dtype=np.float32) * RAY_STEP_PX)[None, :]
    offsets_x, offsets_y = (_RAY_COS * steps).astype(np.float32), (_RAY_SIN * steps).astype(np.float32)
    iris_offsets = np.asarray([round(step / RAY_STEP_PX) for step in RAY_IRIS_STEPS_PX])[None, :]
    gap = round(RAY_GLINT_GAP_PX / RAY_STEP_PX)
    glint_offsets = np.arange(-gap, gap + 1)[None, :]
    last_sample = sample_count - 1
    rows = np.arange(RAY_COUNT)[:, None]
    tolerance = RAY_IRIS_TOLERANCE * contrast
    centre = start
    ellipse: Ellipse | None = None
    for _ in range(RAY_PASSES):
        cx, cy = centre
        map_x, map_y = offsets_x + np.float32(cx), offsets_y + np.float32(cy)
        profiles = np.asarray(
            cv2.remap(smooth, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), np.float32
        )
        above = profiles >= level
        first = np.argmax(above, axis=1)
        crossing = first[:, None]
        # Iris check on the crossing: every sample a few pixels on must be iris-grey.
        outside = profiles[rows, np.minimum(crossing + iris_offsets, last_sample)]
        ok = (first > 0) & above[rows[:, 0], first] & (np.abs(outside - iris_level) <= tolerance).all(axis=1)
        if has_glints:
            near = cv2.remap(glints, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
            around = np.minimum(np.maximum(crossing + glint_offsets, 0), last_sample)
            ok &= ~near[rows, around].any(axis=1)
        rays = np.nonzero(ok)[0]
        if len(rays) < RAY_MIN_POINTS:
            return ellipse
        dist = _steepest_rise_px(profiles[rays], first[rays])
        points = np.column_stack([cx + _RAY_COS[rays, 0] * dist, cy + _RAY_SIN[rays, 0] * dist])
        ellipse = _robust_fit(points)
        (ex, ey), _, _ = ellipse
        if 0 <= ex < smooth.shape[1] and 0 <= ey < smooth.shape[0] and smooth[int(ey), int(ex)] < level:
            centre = (ex, ey)
    return ellipse


def _steepest_rise_px(profiles: npt.NDArray[np.float32], crossing: npt.NDArray[np.intp]) -> npt.NDArray[np.float64]:
    """Distance along each ray of the steepest rise within the window around its crossing, sub-sample."""
    last = profiles.shape[1] - 1
    # Samples crossing - W - 1 .. crossing + W + 1: slopes between neighbours, one more on each side for the
    # parabola through the peak and its neighbours.
    index = np.minimum(np.maximum(crossing[:, None] + _WINDOW, 0), last)
    values = np.take_along_axis(profiles, index, axis=1)
    slope = values[:, 1:] - values[:, :-1]  # slope[:, j] lies between samples index[:, j] and index[:, j + 1]
    rows = np.arange(len(crossing))
    peak = np.argmax(slope[:, 1:-1], axis=1) + 1
    left, mid, right = slope[rows, peak - 1], slope[rows, peak], slope[rows, peak + 1]
    curvature = left - 2.0 * mid + right
    safe = np.where(curvature < 0, curvature, -1.0)
    shift = np.where(curvature < 0, 0.5 * (left - right) / safe, 0.0)
    start = index[rows, peak]
    distance: npt.NDArray[np.float64] = (start + 0.5 + np.minimum(np.maximum(shift, -0.5), 0.5)) * RAY_STEP_PX
    return distance


def _robust_fit(points: npt.NDArray[np.float64]) -> Ellipse:
    """Least-squares ellipse, refitted without the points far from it (a lash, a shadow edge)."""
    ellipse = fit_ellipse(points)
    for _ in range(2):
        distance = ellipse_distance_px(points, ellipse)
        keep = distance < max(INLIER_PX, OUTLIER_MEDIANS * median(distance))
        if np.count_nonzero(keep) < RAY_MIN_POINTS or keep.all():
            break
        points = points[keep]
        ellipse = fit_ellipse(points)
    return ellipse

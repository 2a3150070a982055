"""Starburst edge fit: rays from inside the pupil to its rim, sub-pixel edges, an occlusion-aware ellipse fit.

Each ray stops at the first crossing of the pupil/iris mid-level; the edge is where the profile rises
fastest near that crossing (so the result does not hang on the level chosen). Rays whose crossing sits next
to a glint, and rays whose outside does not look like iris a few pixels on (a lid chord: lid margin then
skin; a lash: dark), give no point: the ellipse is fitted to the pupil/iris border alone, which keeps a
partly hidden pupil's centre where the whole pupil's centre is.

A lid whose skin is about as bright as the iris (low contrast, blur) passes that test, and its chord pulls
a plain fit onto the visible part only. An occluder hides a contiguous sector of the outline and leaves its
edge inside the pupil's outline, never outside: so the fit also tries leaving out one sector of rays at a
time and takes the ellipse that explains clearly more rim points with none outside it. A partial arc pins
the ellipse's shape down poorly, so while a pupil is tracked (the previous frame's pupil is near) its
shape helps: moved onto the rim, it is taken when it explains as many rim points as the plain fit or about
as many as the best hypothesis; otherwise, among the fits that explain about as many as the best, the one
whose axes are closest to it wins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

from app.tracking.pupil.ellipse import (
    Ellipse,
    GrayU8,
    cos_sin_deg,
    fit_ellipse,
    median,
    signed_ellipse_distance_px,
)

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
# Occlusion hypotheses: each leaves out a sector of this fraction of the rays, at SECTOR_STARTS positions.
SECTOR_SPANS = (0.25, 0.4)
SECTOR_STARTS = 16
# A rim point this far outside a hypothesis contradicts it (an occluder's edge lies inside the outline).
OUTSIDE_PX = 1.5
# A hypothesis replaces the plain robust fit when it explains this fraction of the rim points more.
OCCLUSION_GAIN = 0.05
# The tracked pupil's shape is used when the plain fit's centre is within PRIOR_MAX_MOVE x its major axis of
# the tracked pupil's centre; fits within PRIOR_SLACK x the rim points of the best explain "about as many".
PRIOR_SLACK = 0.05
PRIOR_MAX_MOVE = 0.25
# A fit cast from a known re-centred point (no first pass) is kept when its centre lands this close to the point.
RECENTRE_AGREE_PX = 1.0

_ANGLES = np.linspace(0.0, 2.0 * np.pi, RAY_COUNT, endpoint=False)
_RAY_COS, _RAY_SIN = np.cos(_ANGLES), np.sin(_ANGLES)
_ROWS = np.arange(RAY_COUNT)
_WINDOW = np.arange(-RAY_GRADIENT_WINDOW - 1, RAY_GRADIENT_WINDOW + 2)
_SLOPES = len(_WINDOW) - 1
_NEIGHBOURS = np.arange(-1, 2)
_IRIS_OFFSETS = np.asarray([round(step / RAY_STEP_PX) for step in RAY_IRIS_STEPS_PX])
_GLINT_GAP = round(RAY_GLINT_GAP_PX / RAY_STEP_PX)
# A glint within _GLINT_GAP samples of a crossing, as one row-wise dilation (its border never adds a glint).
_GLINT_KERNEL = np.ones((1, 2 * _GLINT_GAP + 1), np.uint8)


@dataclass(frozen=True, slots=True)
class RayFit:
    """`fit_rays`' result: the ellipse (None when too few rays found the rim); the re-centred point its rays were
    cast from (None when they were cast from `start`); whether that point was the caller's `recentred`."""

    ellipse: Ellipse | None
    recentred: tuple[float, float] | None
    reused: bool = False


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
    prior: Ellipse | None = None,
    recentred: tuple[float, float] | None = None,
) -> RayFit:
    """The pupil ellipse from rays cast from `start` (inside the pupil) in `roi`; None when too few rays
    find an iris-bordered edge. `glints` marks (dilated) glint pixels; `prior` is the pupil tracked in the
    previous frame, in `roi` coordinates.

    A first pass from `start` only re-centres (plain level crossings, one fit); the second, from that centre,
    hits the rim square on and gives the result. A caller that knows the re-centred point already (`recentred`: the
    last frame's, see app.tracking.pupil.refine.RecentreMemo) skips the first pass; the result is kept if its
    centre lies within RECENTRE_AGREE_PX of that point, as it would after a first pass of its own.
    """
    contrast = iris_level - inside_level
    if contrast <= 0:
        return RayFit(None, None)
    smooth = np.asarray(cv2.GaussianBlur(roi, (RAY_BLUR_KSIZE, RAY_BLUR_KSIZE), 0), np.float32)
    # Glints are inside the pupil or on its rim: never a crossing. Only their bounding box is looked at (the
    # mask also holds any sclera or skin that bright, often most of the roi).
    gx, gy, gw, gh = cv2.boundingRect(glints)
    has_glints = gw > 0
    if has_glints:
        mask = cast("npt.NDArray[np.bool_]", glints[gy : gy + gh, gx : gx + gw])  # putmask takes any nonzero
        np.putmask(smooth[gy : gy + gh, gx : gx + gw], mask, inside_level)
    near_glint = glints if has_glints else None
    level = inside_level + RAY_EDGE_FRACTION * contrast
    tolerance = RAY_IRIS_TOLERANCE * contrast
    sample_count = int((RAY_REACH * reach_px + RAY_REACH_MARGIN_PX) / RAY_STEP_PX)
    offsets_x, offsets_y = _ray_offsets(sample_count)
    if recentred is not None and _inside_dark(smooth, recentred, level):
        rim = _rim(smooth, recentred, offsets_x, offsets_y, level, iris_level, tolerance, near_glint, True)
        if rim is not None:
            ellipse = _occlusion_fit(rim[0], rim[1], prior)
            (ex, ey), _, _ = ellipse
            if math.hypot(ex - recentred[0], ey - recentred[1]) <= RECENTRE_AGREE_PX:
                return RayFit(ellipse, recentred, reused=True)
    rim = _rim(smooth, start, offsets_x, offsets_y, level, iris_level, tolerance, near_glint, False)
    if rim is None:
        return RayFit(None, None)
    centre, _, _ = fit_ellipse(rim[0])
    recentred_at = centre if _inside_dark(smooth, centre, level) else None
    rim = _rim(smooth, recentred_at or start, offsets_x, offsets_y, level, iris_level, tolerance, near_glint, True)
    if rim is None and recentred_at is not None:
        # The first fit can land outside the pupil on a glint (glints read as pupil in `smooth`).
        recentred_at = None
        rim = _rim(smooth, start, offsets_x, offsets_y, level, iris_level, tolerance, near_glint, True)
    return RayFit(None if rim is None else _occlusion_fit(rim[0], rim[1], prior), recentred_at)


def _inside_dark(smooth: npt.NDArray[np.float32], point: tuple[float, float], level: float) -> bool:
    """Whether `point` lies in `smooth` and reads darker than the rim's `level` there (inside the pupil)."""
    height, width = smooth.shape
    x, y = point
    return 0 <= x < width and 0 <= y < height and bool(smooth[int(y), int(x)] < level)


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
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.intp]] | None:
    """Rim points (N x 2, float32) on the rays from `centre` and their ray indices; None when fewer than
    RAY_MIN_POINTS."""
    cx, cy = centre
    map_x, map_y = offsets_x + np.float32(cx), offsets_y + np.float32(cy)
    profiles = np.asarray(
        cv2.remap(smooth, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), np.float32
    )
    # Samples are picked from the flat profiles by flat index (`take`): far cheaper than 2-D fancy indexing on
    # arrays this small.
    samples = profiles.shape[1]
    last = samples - 1
    flat = profiles.ravel()
    row_start = _ROWS * samples
    first = (profiles >= level).argmax(axis=1)
    crossing_at = row_start + first
    # The crossing must be a real one, every sample a few pixels on iris-grey, and no glint next to it.
    off_iris = flat.take(np.minimum(first[:, None] + _IRIS_OFFSETS, last) + row_start[:, None])
    off_iris -= np.float32(iris_level)
    ok = (first > 0) & (np.abs(off_iris, out=off_iris).max(axis=1) <= tolerance)
    if glints is not None:
        near = cv2.remap(glints, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
        ok &= cv2.dilate(near, _GLINT_KERNEL).ravel().take(crossing_at) == 0
    rays = ok.nonzero()[0]
    if len(rays) < RAY_MIN_POINTS:
        return None
    first = first[rays]
    if steepest:
        dist = _steepest_rise_px(flat, row_start[rays], first, last)
    else:
        at = crossing_at[rays]
        before, after = flat.take(at - 1), flat.take(at)
        dist = (first - 1 + (level - before) / np.maximum(after - before, 1e-3)) * RAY_STEP_PX
    points = np.empty((len(rays), 2), np.float32)
    points[:, 0] = cx + _RAY_COS[rays] * dist
    points[:, 1] = cy + _RAY_SIN[rays] * dist
    return points, rays


def _steepest_rise_px(
    flat: npt.NDArray[np.float32], row_start: npt.NDArray[np.intp], crossing: npt.NDArray[np.intp], last: int
) -> npt.NDArray[np.float64]:
    """Distance along each ray (profiles flattened, each ray's first sample at `row_start`) of the steepest rise
    within the window around its crossing, sub-sample."""
    # Samples crossing - W - 1 .. crossing + W + 1: the slopes between them, one extra on each side for the
    # parabola through the peak and its neighbours.
    index = np.minimum(np.maximum(crossing[:, None] + _WINDOW, 0), last)
    values = flat.take(index + row_start[:, None])
    slope = values[:, 1:] - values[:, :-1]  # slope[:, j] lies between samples index[:, j] and index[:, j + 1]
    count = len(crossing)
    # Flat positions of each row's peak slope.
    peak_at = slope[:, 1:-1].argmax(axis=1) + np.arange(1, count * _SLOPES, _SLOPES)
    left, mid, right = slope.ravel().take(peak_at[:, None] + _NEIGHBOURS).T
    curvature = left - 2.0 * mid + right
    peaked = curvature < 0  # else the rise is flat-topped: no sub-sample shift
    shift = np.where(peaked, 0.5 * (left - right) / np.where(peaked, curvature, -1.0), 0.0)
    shift = np.minimum(np.maximum(shift, -0.5), 0.5)
    # index has one column more than slope: the peak's row-major position there is peak_at + its row.
    distance: npt.NDArray[np.float64] = (index.ravel().take(peak_at + np.arange(count)) + 0.5 + shift) * RAY_STEP_PX
    return distance


def _robust_fit(points: npt.NDArray[np.float32]) -> tuple[Ellipse, npt.NDArray[np.float64] | None]:
    """Least-squares ellipse, refitted without the points far from it (a lash, a shadow edge); and the signed
    distances of all `points` to it when they were computed on the way (no point was left out), else None."""
    ellipse = fit_ellipse(points)
    for refits in range(2):
        signed = signed_ellipse_distance_px(points, ellipse)
        distance = np.abs(signed)
        keep = distance < max(INLIER_PX, OUTLIER_MEDIANS * median(distance))
        kept = int(np.count_nonzero(keep))
        if kept < RAY_MIN_POINTS or kept == len(points):
            return ellipse, signed if refits == 0 else None
        points = points[keep]
        ellipse = fit_ellipse(points)
    return ellipse, None


def _support(signed_px: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Per column: rim points on the ellipse minus rim points outside it (signed distances, points x fits)."""
    on = np.count_nonzero(np.abs(signed_px) < INLIER_PX, axis=0)
    support: npt.NDArray[np.int64] = on - np.count_nonzero(signed_px > OUTSIDE_PX, axis=0)
    return support


def _support_of(points: npt.NDArray[np.float32], ellipse: Ellipse) -> int:
    return _support_from(signed_ellipse_distance_px(points, ellipse))


def _support_from(signed_px: npt.NDArray[np.float64]) -> int:
    return int(_support(signed_px[:, None])[0])


def _occlusion_fit(points: npt.NDArray[np.float32], rays: npt.NDArray[np.intp], prior: Ellipse | None) -> Ellipse:
    """The robust fit, or a fit that explains clearly more rim points with none outside it: the ellipse of an
    occlusion hypothesis (one sector of rays left out) or the tracked pupil moved onto the rim (see the
    module's docstring)."""
    count = len(points)
    robust, signed_all = _robust_fit(points)
    baseline = _support_of(points, robust) if signed_all is None else _support_from(signed_all)
    if baseline >= (1.0 - OCCLUSION_GAIN) * count:
        return robust  # no hypothesis can explain enough more
    slack = PRIOR_SLACK * count
    moved, moved_support = None, -count
    if prior is not None and _near(robust, prior):
        moved = _moved_prior(prior, points, robust[0])
        moved_support = _support_of(points, moved)
        if moved_support >= baseline:
            return moved  # the tracked shape explains the rim as well as the plain fit: no search
    hypotheses = _sector_hypotheses(points, rays)
    if hypotheses is None:
        return robust
    support, axes, signed = hypotheses
    top = max(int(support.max()), baseline)
    if moved is not None and moved_support >= top - slack:
        return moved
    if prior is not None and moved is not None:
        best = _closest_to_prior(support, axes, baseline, robust, prior, count)
        if best < 0:
            return robust
    else:
        best = int(np.argmax(support))
        if support[best] <= baseline + OCCLUSION_GAIN * count:
            return robust
    chosen = points[np.abs(signed[:, best]) < INLIER_PX]
    return fit_ellipse(chosen) if len(chosen) >= RAY_MIN_POINTS else robust


def _sector_hypotheses(
    points: npt.NDArray[np.float32], rays: npt.NDArray[np.intp]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]] | None:
    """One least-squares conic per occlusion hypothesis: (support, (minor, major) axes in pixels, signed
    distances points x hypotheses); None when the batch is singular."""
    count = len(points)
    # Conics a x^2 + b xy + c y^2 + d x + e y = 1 in coordinates centred on the points' mean (inside the
    # pupil), least squares over each hypothesis' rays at once: one batched 5 x 5 solve.
    centre = points.mean(axis=0, dtype=np.float64)
    scale = max(float(np.abs(points - centre).max()), 1.0)
    x = (points[:, 0] - centre[0]) / scale
    y = (points[:, 1] - centre[1]) / scale
    design = np.column_stack([x * x, x * y, y * y, x, y])
    weights = _SECTOR_KEEP[:, rays]
    products = (design[:, :, None] * design[:, None, :]).reshape(count, 25)
    normal = (weights @ products).reshape(-1, 5, 5) + _RIDGE
    try:
        conics = np.linalg.solve(normal, (weights @ design)[..., None])[..., 0]
    except np.linalg.LinAlgError:
        return None
    a, b, c, d, e = conics.T
    # Sampson distance, signed: the conic is below 1 inside.
    grad_x = 2.0 * a * x[:, None] + b * y[:, None] + d
    grad_y = b * x[:, None] + 2.0 * c * y[:, None] + e
    signed = (design @ conics.T - 1.0) / np.maximum(np.hypot(grad_x, grad_y), 1e-9) * scale
    support = _support(signed)
    axes = _conic_axes_px(conics, scale)
    support[~np.isfinite(axes[:, 0])] = -count
    return support, axes, signed


def _moved_prior(prior: Ellipse, points: npt.NDArray[np.float32], start: tuple[float, float]) -> Ellipse:
    """The prior's ellipse moved to fit the rim points best (its shape kept): Gauss-Newton on the centre over
    the points not far inside it (an occluder's edge lies inside)."""
    _, axes, angle = prior
    cx, cy = start
    w, h = max(axes[0] / 2.0, 1e-3), max(axes[1] / 2.0, 1e-3)
    cos_a, sin_a = cos_sin_deg(angle)
    px, py = points[:, 0].astype(np.float64), points[:, 1].astype(np.float64)
    for _ in range(4):
        dx, dy = px - cx, py - cy
        u = (dx * cos_a + dy * sin_a) / w
        v = (-dx * sin_a + dy * cos_a) / h
        radius = np.hypot(u, v)
        signed = (radius - 1.0) * 0.5 * (w + h)
        # Outward normal: the gradient of the normalised radius, back in image axes.
        gu, gv = u / w, v / h
        nx, ny = gu * cos_a - gv * sin_a, gu * sin_a + gv * cos_a
        norm = np.maximum(np.hypot(nx, ny), 1e-9)
        nx, ny = nx / norm, ny / norm
        use = (signed > -OUTSIDE_PX) & (signed < 3.0)
        if np.count_nonzero(use) < RAY_MIN_POINTS:
            break
        ux, uy, r = nx[use], ny[use], signed[use]
        sxx, sxy, syy = float(ux @ ux), float(ux @ uy), float(uy @ uy)
        det = sxx * syy - sxy * sxy
        if det <= 1e-9:
            break
        bx, by = float(ux @ r), float(uy @ r)
        cx += (syy * bx - sxy * by) / det
        cy += (sxx * by - sxy * bx) / det
    return (cx, cy), (float(axes[0]), float(axes[1])), float(angle)


def _near(found: Ellipse, prior: Ellipse) -> bool:
    (fx, fy), _, _ = found
    (px, py), (pw, ph), _ = prior
    return math.hypot(fx - px, fy - py) <= PRIOR_MAX_MOVE * max(pw, ph)


def _closest_to_prior(
    support: npt.NDArray[np.int64],
    axes: npt.NDArray[np.float64],
    baseline: int,
    robust: Ellipse,
    prior: Ellipse,
    count: int,
) -> int:
    """Among the fits that explain about as many rim points as the best, the hypothesis whose axes are closest
    to the prior's; -1 when the robust fit is closer (or no hypothesis qualifies)."""
    _, (prior_w, prior_h), _ = prior
    prior_axes = np.log([min(prior_w, prior_h), max(prior_w, prior_h)])
    floor = max(int(support.max()), baseline) - PRIOR_SLACK * count
    with np.errstate(divide="ignore", invalid="ignore"):
        deviation = np.abs(np.log(axes) - prior_axes).sum(axis=1)
    deviation[(support < floor) | ~np.isfinite(deviation)] = np.inf
    pick = int(np.argmin(deviation))
    _, (robust_w, robust_h), _ = robust
    robust_axes = np.log([max(min(robust_w, robust_h), 1e-3), max(robust_w, robust_h, 1e-3)])
    robust_deviation = float(np.abs(robust_axes - prior_axes).sum()) if baseline >= floor else np.inf
    return pick if deviation[pick] < robust_deviation else -1


def _conic_axes_px(conics: npt.NDArray[np.float64], scale: float) -> npt.NDArray[np.float64]:
    """(minor, major) full axes in pixels of each conic a x^2 + b xy + c y^2 + d x + e y = 1; NaN for a conic
    that is not a real ellipse."""
    a, b, c, d, e = conics.T
    det = 4.0 * a * c - b * b
    safe = np.where(det > 0, det, 1.0)
    x0, y0 = (b * e - 2.0 * c * d) / safe, (b * d - 2.0 * a * e) / safe
    # Around its centre the conic reads q(u) = k with k = 1 + q(centre), q the quadratic part.
    k = 1.0 + a * x0 * x0 + b * x0 * y0 + c * y0 * y0
    root = np.hypot((a - c) / 2.0, b / 2.0)
    large, small = (a + c) / 2.0 + root, (a + c) / 2.0 - root
    real = (det > 0) & (k > 0) & (small > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        minor = np.where(real, 2.0 * np.sqrt(k / large) * scale, np.nan)
        major = np.where(real, 2.0 * np.sqrt(k / small) * scale, np.nan)
    axes: npt.NDArray[np.float64] = np.column_stack([minor, major])
    return axes


def _sector_weights() -> npt.NDArray[np.float64]:
    """One row per occlusion hypothesis over the RAY_COUNT rays: 0 for the sector it leaves out, else 1."""
    rows = []
    for span in SECTOR_SPANS:
        width = round(span * RAY_COUNT)
        for start in range(0, RAY_COUNT, RAY_COUNT // SECTOR_STARTS):
            row = np.ones(RAY_COUNT)
            row[(start + np.arange(width)) % RAY_COUNT] = 0.0
            rows.append(row)
    return np.asarray(rows)


_SECTOR_KEEP = _sector_weights()
_RIDGE = 1e-9 * np.eye(5)

"""Refine a coarse pupil guess: adaptive local threshold, glint-filled region, ellipse fit, outline confidence."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from app.tracking.results import PupilResult

GrayU8 = npt.NDArray[np.uint8]
Ellipse = tuple[tuple[float, float], tuple[float, float], float]

# Outline-contrast votes (PuRe): a point on the ellipse votes when its outside is this much brighter.
OUTLINE_BIAS_GREY = 5.0
OUTLINE_SAMPLES = 32
THRESHOLD_ITERATIONS = 2
# Threshold = inside + THRESHOLD_FRACTION x (outside - inside): the edge's half-way grey level.
THRESHOLD_FRACTION = 0.45
INITIAL_THRESHOLD_GREY = 12.0
MIN_REGION_AREA_PX = 6
# Glints are near-saturated corneal reflections, far brighter than the iris around the pupil.
GLINT_MARGIN_GREY = 30.0
EDGE_BAND_PX = 2
CANNY_LOW, CANNY_HIGH = 20, 50
MIN_EDGE_POINTS = 8
EDGE_FIT_ITERATIONS = 2
EDGE_INLIER_PX = 1.0
MIN_AXIS_RATIO = 0.35
# Outline points whose outside (sampled this far out) differs from the outline's median outside by more than
# IRIS_TOLERANCE x (iris - pupil) border an occluder; at least this fraction of the outline must remain.
OUTSIDE_STEPS_PX = (2.0, 3.0, 4.0)
IRIS_TOLERANCE = 0.3
OCCLUSION_MIN_KEPT = 0.4
_OUTSIDE_STEPS = np.asarray(OUTSIDE_STEPS_PX, np.float64)[:, None]
_KERNEL_3 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
_ANGLES = np.linspace(0.0, 2.0 * np.pi, OUTLINE_SAMPLES, endpoint=False)
_COS, _SIN = np.cos(_ANGLES), np.sin(_ANGLES)


def fit_ellipse(points: npt.NDArray[np.generic]) -> Ellipse:
    """`cv2.fitEllipse` with plain float results: ((cx, cy), (w, h), angle_deg)."""
    (cx, cy), (w, h), angle = cv2.fitEllipse(np.asarray(points, np.float32).reshape(-1, 1, 2))
    return (float(cx), float(cy)), (float(w), float(h)), float(angle)


def as_u8(image: npt.NDArray[np.generic]) -> GrayU8:
    result: GrayU8 = np.asarray(image, np.uint8)
    return result


def outline_confidence(gray: GrayU8, ellipse: Ellipse) -> float:
    """Fraction of outline points whose outside is brighter than the inside (PuRe's outline contrast)."""
    (cx, cy), (w, h), angle_deg = ellipse
    a, b = w / 2.0, h / 2.0
    if a < 1.0 or b < 1.0:
        return 0.0
    height, width = gray.shape
    cos_a, sin_a = np.cos(np.deg2rad(angle_deg)), np.sin(np.deg2rad(angle_deg))
    offset_px = max(1.5, 0.15 * min(a, b))
    scales = (
        np.array([[max(a - offset_px, 0.5)], [a + offset_px]]),
        np.array([[max(b - offset_px, 0.5)], [b + offset_px]]),
    )
    ux, uy = scales[0] * _COS, scales[1] * _SIN
    xi = np.clip((cx + ux * cos_a - uy * sin_a + 0.5).astype(np.int64), 0, width - 1)
    yi = np.clip((cy + ux * sin_a + uy * cos_a + 0.5).astype(np.int64), 0, height - 1)
    values = gray[yi, xi].astype(np.int16)
    return float(np.mean(values[1] - values[0] > OUTLINE_BIAS_GREY))


def refine_pupil(gray: GrayU8, cx: float, cy: float, radius_px: float, algorithm: str) -> PupilResult:
    """Grow the dark region around (cx, cy) with a threshold half-way between pupil and its surround.

    The centre is the centroid of the region with glints filled in; the ellipse is fitted to its outline.
    """
    height, width = gray.shape
    half = int(max(3.0 * radius_px, 10.0))
    x0, y0 = max(int(cx) - half, 0), max(int(cy) - half, 0)
    x1, y1 = min(int(cx) + half + 1, width), min(int(cy) + half + 1, height)
    roi = gray[y0:y1, x0:x1]
    if roi.shape[0] < 5 or roi.shape[1] < 5:
        return PupilResult.none(algorithm)
    seed_box = max(int(radius_px * 0.6) | 1, 3)
    smooth = cv2.blur(roi, (seed_box, seed_box))
    # Seed: the darkest smoothed point near the guess.
    search = max(int(radius_px), 2)
    lx, ly = int(cx) - x0, int(cy) - y0
    sx0, sy0 = max(lx - search, 0), max(ly - search, 0)
    near = smooth[sy0 : ly + search + 1, sx0 : lx + search + 1]
    if near.size == 0:
        return PupilResult.none(algorithm)
    _, _, (sx, sy), _ = cv2.minMaxLoc(near)
    seed_x, seed_y = sx + sx0, sy + sy0
    threshold = float(smooth[seed_y, seed_x]) + INITIAL_THRESHOLD_GREY
    region = np.zeros((roi.shape[0] + 2, roi.shape[1] + 2), np.uint8)
    for _ in range(THRESHOLD_ITERATIONS + 1):
        region[:] = 0
        seed_value = int(roi[seed_y, seed_x])
        if seed_value > threshold:
            return PupilResult.none(algorithm)
        flags = 4 | cv2.FLOODFILL_FIXED_RANGE | cv2.FLOODFILL_MASK_ONLY | (255 << 8)
        cv2.floodFill(roi, region, (seed_x, seed_y), 0, (255, 255, 255, 255), (int(threshold) - seed_value,) * 4, flags)
        inner = region[1:-1, 1:-1]
        ring = cv2.dilate(inner, _KERNEL_3, iterations=3) - cv2.dilate(inner, _KERNEL_3, iterations=1)
        inside_level = cv2.mean(roi, inner)[0]
        ring_values = roi[ring > 0]
        outside_level = float(np.median(ring_values)) if ring_values.size else 0.0
        if cv2.countNonZero(inner) < MIN_REGION_AREA_PX or outside_level <= inside_level:
            return PupilResult.none(algorithm)
        threshold = inside_level + THRESHOLD_FRACTION * (outside_level - inside_level)
    inner = region[1:-1, 1:-1]
    contours, _ = cv2.findContours(inner, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return PupilResult.none(algorithm)
    # Glints inside the pupil leave holes: filling the outer contour removes them.
    filled = np.zeros_like(inner)
    cv2.drawContours(filled, contours, -1, 255, -1)
    contour = max(contours, key=len)
    if len(contour) < 5:
        return PupilResult.none(algorithm)
    # Glints on the rim cut notches: fit the ellipse without outline points next to a glint, then count the
    # glint pixels inside that ellipse as pupil.
    _, glints = cv2.threshold(roi, min(outside_level + GLINT_MARGIN_GREY, 254.0), 255, cv2.THRESH_BINARY)
    glints = as_u8(cv2.dilate(glints, _KERNEL_3, iterations=2))
    points = contour[:, 0, :]
    clean = points[glints[points[:, 1], points[:, 0]] == 0]
    clean = _iris_bordered(roi, clean, inside_level)
    fit_points = clean if len(clean) >= max(5, len(points) // 2) else points
    (ex, ey), (ew, eh), angle = fit_ellipse(fit_points)
    if len(fit_points) < len(points) and max(ew, eh) < 2.0 * half:
        inside_ellipse = np.zeros_like(inner)
        cv2.ellipse(inside_ellipse, ((ex, ey), (ew, eh), angle), 255, -1)
        filled |= inside_ellipse & glints
    ellipse: Ellipse = ((ex, ey), (ew, eh), angle)
    rays = _fit_rays(roi, (float(seed_x), float(seed_y)), ellipse, inside_level, outside_level, glints)
    ellipse = rays if rays is not None else _fit_edges(roi, filled, glints, ellipse)
    (ex, ey), (ew, eh), angle = ellipse
    if not (np.isfinite(ex) and np.isfinite(ey)) or min(ew, eh) < 1.0:
        return PupilResult.none(algorithm)
    ellipse = ((ex + x0, ey + y0), (ew, eh), angle)
    confidence = outline_confidence(gray, ellipse)
    if min(ew, eh) < MIN_AXIS_RATIO * max(ew, eh):
        confidence *= 0.5
    return PupilResult(float(ex + x0), float(ey + y0), float(ew), float(eh), float(angle), confidence, algorithm)


def _iris_bordered(roi: GrayU8, points: npt.NDArray[np.int32], inside_level: float) -> npt.NDArray[np.int32]:
    """Outline points whose outside looks like the rest of the outline's outside (the iris).

    A lid or lashes cutting the pupil leave a chord whose outside is skin, lid margin or lash, not iris; an
    ellipse fitted through that chord is pulled towards the visible part's centroid.
    """
    if len(points) < 2 * MIN_EDGE_POINTS:
        return points
    offsets = points - points.mean(axis=0)
    unit = offsets / np.maximum(np.hypot(offsets[:, 0], offsets[:, 1]), 1e-6)[:, None]
    height, width = roi.shape
    # All steps at once: rows = steps, columns = outline points.
    xs = np.clip(np.rint(points[:, 0] + _OUTSIDE_STEPS * unit[:, 0]).astype(np.intp), 0, width - 1)
    ys = np.clip(np.rint(points[:, 1] + _OUTSIDE_STEPS * unit[:, 1]).astype(np.intp), 0, height - 1)
    outside = roi[ys, xs].astype(np.float32)
    flat = outside.ravel()
    middle = flat.size // 2
    iris = float(np.partition(flat, middle)[middle])  # the median, without np.median's overhead
    contrast = iris - inside_level
    if contrast <= 0:
        return points
    # Every sample must look like iris: a thin dark lid margin before bright skin averages to iris grey.
    keep = np.max(np.abs(outside - iris), axis=0) <= IRIS_TOLERANCE * contrast
    if np.count_nonzero(keep) < max(MIN_EDGE_POINTS, OCCLUSION_MIN_KEPT * len(points)):
        return points
    kept: npt.NDArray[np.int32] = points[keep]
    return kept


def ellipse_distance_px(points: npt.NDArray[np.float64], ellipse: Ellipse) -> npt.NDArray[np.float64]:
    """Approximate geometric distance of points to an ellipse (radial, scaled by the mean semi-axis)."""
    (cx, cy), (w, h), angle_deg = ellipse
    a, b = max(w / 2.0, 1e-3), max(h / 2.0, 1e-3)
    cos_a, sin_a = np.cos(np.deg2rad(angle_deg)), np.sin(np.deg2rad(angle_deg))
    dx, dy = points[:, 0] - cx, points[:, 1] - cy
    u = (dx * cos_a + dy * sin_a) / a
    v = (-dx * sin_a + dy * cos_a) / b
    distance: npt.NDArray[np.float64] = np.abs(np.hypot(u, v) - 1.0) * 0.5 * (a + b)
    return distance


def _fit_edges(roi: GrayU8, filled: GrayU8, glints: GrayU8, initial: Ellipse) -> Ellipse:
    """Refit to Canny edges in a band around the region's outline, dropping glint edges and outliers."""
    outer = as_u8(cv2.dilate(filled, _KERNEL_3, iterations=EDGE_BAND_PX))
    band = outer & ~as_u8(cv2.erode(filled, _KERNEL_3, iterations=EDGE_BAND_PX))
    edges = as_u8(cv2.Canny(roi, CANNY_LOW, CANNY_HIGH, L2gradient=True)) & band & ~glints
    ys, xs = np.nonzero(edges)
    if len(xs) < MIN_EDGE_POINTS:
        return initial
    points = np.column_stack([xs, ys]).astype(np.float64)
    ellipse = initial
    for _ in range(EDGE_FIT_ITERATIONS):
        distance = ellipse_distance_px(points, ellipse)
        keep = points[distance < max(EDGE_INLIER_PX, 2.0 * float(np.median(distance)))]
        if len(keep) < MIN_EDGE_POINTS:
            return ellipse
        ellipse = fit_ellipse(keep)
    return ellipse


RAY_COUNT = 64
RAY_MAX_GRADIENT = True
RAY_GRADIENT_WINDOW = 4
RAY_BLUR_KSIZE = 5
RAY_STEP_PX = 0.5
RAY_REACH = 1.6  # rays reach this x the initial ellipse's semi-major axis
RAY_EDGE_FRACTION = 0.5
RAY_IRIS_STEPS_PX = (1.5, 2.5, 3.5, 5.0)
RAY_IRIS_TOLERANCE = 0.35
RAY_GLINT_GAP_PX = 1.5
RAY_MIN_POINTS = 10
RAY_PASSES = 2
_RAY_ANGLES = np.linspace(0.0, 2.0 * np.pi, RAY_COUNT, endpoint=False)
_RAY_COS, _RAY_SIN = np.cos(_RAY_ANGLES)[:, None], np.sin(_RAY_ANGLES)[:, None]


def _fit_rays(
    roi: GrayU8,
    seed: tuple[float, float],
    initial: Ellipse,
    inside_level: float,
    iris_level: float,
    glints: GrayU8,
) -> Ellipse | None:
    """Starburst: rays from inside the pupil to the first crossing of the pupil/iris mid-level, sub-pixel.

    Crossings next to a glint, and those whose outside does not look like iris (a lid chord, a lash), are
    left out; the ellipse is fitted to the rest with residual outlier rejection. None when too few remain.
    """
    contrast = iris_level - inside_level
    if contrast <= 0:
        return None
    smooth = cv2.GaussianBlur(roi, (RAY_BLUR_KSIZE, RAY_BLUR_KSIZE), 0).astype(np.float32)
    smooth[glints > 0] = inside_level  # glints are inside or on the rim: never an edge crossing
    glint_f = glints.astype(np.float32)
    level = inside_level + RAY_EDGE_FRACTION * contrast
    (_, _), (w, h), _ = initial
    reach = RAY_REACH * max(w, h) / 2.0 + 4.0
    steps = np.arange(0.0, reach, RAY_STEP_PX, dtype=np.float32)[None, :]
    centre = initial[0] if _dark_at(smooth, initial[0], level) else seed
    ellipse: Ellipse | None = None
    for _ in range(RAY_PASSES):
        cx, cy = centre
        map_x = (cx + _RAY_COS * steps).astype(np.float32)
        map_y = (cy + _RAY_SIN * steps).astype(np.float32)
        profiles = cv2.remap(smooth, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        near_glint = cv2.remap(glint_f, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
        above = profiles >= level
        first = np.argmax(above, axis=1)
        valid = above[np.arange(RAY_COUNT), first] & (first > 0)
        rays = np.nonzero(valid)[0]
        k = first[rays]
        before, after = profiles[rays, k - 1], profiles[rays, k]
        frac = np.clip((level - before) / np.maximum(after - before, 1e-3), 0.0, 1.0)
        dist = (k - 1 + frac) * RAY_STEP_PX
        if RAY_MAX_GRADIENT:
            # The edge is where the profile rises fastest near the crossing (independent of the level chosen).
            slope = np.diff(profiles[rays], axis=1)  # slope[j] is between samples j and j+1
            last = slope.shape[1] - 1
            window = np.clip(k[:, None] + np.arange(-RAY_GRADIENT_WINDOW, RAY_GRADIENT_WINDOW)[None, :], 0, last)
            local = np.take_along_axis(slope, window, axis=1)
            j = np.take_along_axis(window, np.argmax(local, axis=1)[:, None], axis=1)[:, 0]
            left = slope[np.arange(len(rays)), np.maximum(j - 1, 0)]
            mid = slope[np.arange(len(rays)), j]
            right = slope[np.arange(len(rays)), np.minimum(j + 1, last)]
            curvature = left - 2.0 * mid + right
            shift = np.where(curvature < 0, 0.5 * (left - right) / np.where(curvature < 0, curvature, -1.0), 0.0)
            dist = (j + 0.5 + np.clip(shift, -0.5, 0.5)) * RAY_STEP_PX
        # Outside must look like iris a few pixels on, and no glint may sit at the crossing.
        ok = np.ones(len(rays), bool)
        for step_px in RAY_IRIS_STEPS_PX:
            idx = np.minimum(k + round(step_px / RAY_STEP_PX), steps.shape[1] - 1)
            ok &= np.abs(profiles[rays, idx] - iris_level) <= RAY_IRIS_TOLERANCE * contrast
        gap = round(RAY_GLINT_GAP_PX / RAY_STEP_PX)
        for offset in range(-gap, gap + 1):
            idx = np.clip(k + offset, 0, steps.shape[1] - 1)
            ok &= near_glint[rays, idx] == 0
        rays, dist = rays[ok], dist[ok]
        if len(rays) < RAY_MIN_POINTS:
            return ellipse
        points = np.column_stack([cx + _RAY_COS[rays, 0] * dist, cy + _RAY_SIN[rays, 0] * dist])
        fitted = fit_ellipse(points)
        for _ in range(2):
            distance = ellipse_distance_px(points, fitted)
            keep = distance < max(EDGE_INLIER_PX, 2.5 * float(np.median(distance)))
            if np.count_nonzero(keep) < RAY_MIN_POINTS:
                break
            points = points[keep]
            fitted = fit_ellipse(points)
        ellipse = fitted
        centre = fitted[0] if _dark_at(smooth, fitted[0], level) else centre
    return ellipse


def _dark_at(image: npt.NDArray[np.float32], point: tuple[float, float], level: float) -> bool:
    x, y = round(point[0]), round(point[1])
    height, width = image.shape
    return 0 <= x < width and 0 <= y < height and float(image[y, x]) < level

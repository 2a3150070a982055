"""RANSAC ellipse fit to the dark region's edges: robust when lids or lashes cut the pupil's outline."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from app.tracking.pupil.ellipse import Ellipse, as_u8, ellipse_distance_px, fit_ellipse, outline_confidence
from app.tracking.results import PupilResult

GrayU8 = npt.NDArray[np.uint8]

RANSAC_ITERATIONS = 64
INLIER_DISTANCE_PX = 1.0
MIN_EDGE_POINTS = 8
# The best hypotheses by inlier count tried in turn until one is a plausible pupil.
RANSAC_REFITS = 3
_RIDGE = 1e-9 * np.eye(5)


def ransac_pupil(gray: GrayU8, cx: float, cy: float, radius_px: float, seed: int = 0) -> PupilResult:
    """Edges around (cx, cy) of a dark region, then the ellipse with the most edge inliers."""
    height, width = gray.shape
    half = int(max(2.5 * radius_px, 8.0))
    x0, y0 = max(int(cx) - half, 0), max(int(cy) - half, 0)
    x1, y1 = min(int(cx) + half + 1, width), min(int(cy) + half + 1, height)
    roi = cv2.GaussianBlur(gray[y0:y1, x0:x1], (3, 3), 0)
    if roi.shape[0] < 5 or roi.shape[1] < 5:
        return PupilResult.none("RANSAC")
    darkest = float(np.min(roi))
    median = float(np.median(roi))
    # Keep only edges bordering dark pixels: the pupil's rim, not the iris or the lashes' far side.
    edges = as_u8(cv2.Canny(roi, 20, 50))
    dark = (roi < darkest + 0.5 * (median - darkest)).astype(np.uint8)
    near_dark = cv2.dilate(dark, np.ones((3, 3), np.uint8), iterations=2)
    ys, xs = np.nonzero(edges & as_u8(near_dark * 255))
    if len(xs) < MIN_EDGE_POINTS:
        return PupilResult.none("RANSAC")
    points = np.column_stack([xs, ys]).astype(np.float64)
    best = _best_hypothesis(points, half, np.random.default_rng(seed))
    if best is None:
        return PupilResult.none("RANSAC")
    inlier_points = points[ellipse_distance_px(points, best) < INLIER_DISTANCE_PX].astype(np.float32)
    if len(inlier_points) >= 5:
        best = fit_ellipse(inlier_points)
    (ex, ey), (ew, eh), angle = best
    full = ((ex + x0, ey + y0), (ew, eh), angle)
    confidence = outline_confidence(gray, full)
    return PupilResult(float(ex + x0), float(ey + y0), float(ew), float(eh), float(angle), confidence, "RANSAC")


def _best_hypothesis(points: npt.NDArray[np.float64], half: int, rng: np.random.Generator) -> Ellipse | None:
    """All hypotheses at once: conics through 5 random points (one batched solve), scored by the number of
    points within INLIER_DISTANCE_PX (Sampson distance); the best plausible ellipse, refitted by cv2."""
    count = len(points)
    centre = points.mean(axis=0)
    scale = max(float(np.abs(points - centre).max()), 1.0)
    x, y = (points[:, 0] - centre[0]) / scale, (points[:, 1] - centre[1]) / scale
    design = np.column_stack([x * x, x * y, y * y, x, y, np.ones_like(x)])
    # Conics a x^2 + b xy + c y^2 + d x + e y = 1 through 5 random points each (the pupil does not pass
    # through the edge points' centroid, so f = -1 loses nothing); a tiny ridge keeps repeated points solvable.
    samples = rng.integers(0, count, (RANSAC_ITERATIONS, 5))
    system = design[samples][:, :, :5]
    normal = np.transpose(system, (0, 2, 1)) @ system + _RIDGE
    coefficients = np.linalg.solve(normal, np.transpose(system, (0, 2, 1)).sum(axis=2)[..., None])[..., 0]
    conics = np.concatenate([coefficients, -np.ones((RANSAC_ITERATIONS, 1))], axis=1)
    a, b, c, d, e = (conics[:, i : i + 1] for i in range(5))
    is_ellipse = (b * b - 4.0 * a * c)[:, 0] < 0
    values = design @ conics.T  # (points, iterations)
    grad_x = 2.0 * a.T * x[:, None] + b.T * y[:, None] + d.T
    grad_y = b.T * x[:, None] + 2.0 * c.T * y[:, None] + e.T
    distance_px = np.abs(values) / np.maximum(np.hypot(grad_x, grad_y), 1e-9) * scale
    inliers = np.count_nonzero(distance_px < INLIER_DISTANCE_PX, axis=0)
    inliers[~is_ellipse] = 0
    for index in np.argsort(-inliers)[:RANSAC_REFITS]:
        if inliers[index] < MIN_EDGE_POINTS:
            return None
        ellipse = fit_ellipse(points[distance_px[:, index] < INLIER_DISTANCE_PX])
        (_, _), (w, h), _ = ellipse
        if min(w, h) >= 2.0 and max(w, h) <= 2.0 * half and min(w, h) >= 0.3 * max(w, h):
            return ellipse
    return None

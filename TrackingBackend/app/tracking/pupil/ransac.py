"""RANSAC ellipse fit to the dark region's edges: robust when lids or lashes cut the pupil's outline."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from app.tracking.pupil.ellipse import Ellipse, as_u8, ellipse_distance_px, fit_ellipse, outline_confidence
from app.tracking.results import PupilResult

GrayU8 = npt.NDArray[np.uint8]

RANSAC_ITERATIONS = 40
INLIER_DISTANCE_PX = 1.0
MIN_EDGE_POINTS = 8


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
    rng = np.random.default_rng(seed)
    best: Ellipse | None = None
    best_inliers = 0
    for _ in range(RANSAC_ITERATIONS):
        sample = points[rng.choice(len(points), 6, replace=False)].astype(np.float32)
        ellipse = fit_ellipse(sample)
        (_, _), (w, h), _ = ellipse
        if not (min(w, h) >= 2.0 and max(w, h) <= 2.0 * half and min(w, h) >= 0.3 * max(w, h)):
            continue
        inliers = int(np.count_nonzero(ellipse_distance_px(points, ellipse) < INLIER_DISTANCE_PX))
        if inliers > best_inliers:
            best, best_inliers = ellipse, inliers
    if best is None or best_inliers < MIN_EDGE_POINTS:
        return PupilResult.none("RANSAC")
    inlier_points = points[ellipse_distance_px(points, best) < INLIER_DISTANCE_PX].astype(np.float32)
    if len(inlier_points) >= 5:
        best = fit_ellipse(inlier_points)
    (ex, ey), (ew, eh), angle = best
    full = ((ex + x0, ey + y0), (ew, eh), angle)
    confidence = outline_confidence(gray, full)
    return PupilResult(float(ex + x0), float(ey + y0), float(ew), float(eh), float(angle), confidence, "RANSAC")

"""Refine a coarse pupil guess: grow the dark region with a local adaptive threshold, then fit its rim.

The region gives the pupil and iris grey levels and a first centre and size. Two fits follow: the starburst
ray fit (`rays.py`, iris-bordered rim only: right under lids and glints) and the region's outline (without
glint notches or occluder chords) refined on Canny edges (steadier on real eyes whose iris is uneven). The
one whose visible outline contrasts better wins, the ray fit on a tie.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from app.tracking.pupil.ellipse import (
    Ellipse,
    GrayU8,
    as_u8,
    ellipse_distance_px,
    fit_ellipse,
    median,
    outline_confidence,
    visible_outline_score,
)
from app.tracking.pupil.rays import fit_rays
from app.tracking.results import PupilResult

# The region is searched within this many coarse radii of the guess.
ROI_RADII = 4.0
THRESHOLD_ITERATIONS = 2
# The ray fit is kept unless the region fit's visible outline scores this much better: the region's outline
# follows a lid chord as readily as the pupil's rim, and a chord's outline contrasts well too.
RAY_FIT_PREFERENCE = 0.1
# While a pupil is tracked, the region fit also wins on any better score when it keeps the tracked pupil's major
# axis (within SIZE_KEPT of it) and the ray fit strays (by over SIZE_STRAYED): on real clips the ray fit sometimes runs
# down into the iris (demo3: a 45 px pupil fitted 75 px tall). Jitter fell on 6 of the 7 real clips (demo3 0.73 ->
# 0.69 px, test2 4.17 -> 4.06), MEYE and the synthetic sets unchanged.
SIZE_KEPT, SIZE_STRAYED = 0.15, 0.3
# The tracked pupil's first ray pass is reused (RecentreMemo) while it is found this surely and its grown region's area
# stays within this fraction of the area at the last first pass, for at most RECENTRE_REUSES frames in a row. On the
# hard synthetic set partly hidden pupils (found 0.6-0.9) went wrong when reused; these left every accuracy figure
# within +-0.005 (the first pass is about a fifth of a plainly seen pupil's refinement).
RECENTRE_MIN_CONFIDENCE = 0.95
RECENTRE_AREA_TOLERANCE = 0.05
RECENTRE_REUSES = 8
# Threshold = inside + THRESHOLD_FRACTION x (outside - inside): the edge's half-way grey level.
THRESHOLD_FRACTION = 0.45
INITIAL_THRESHOLD_GREY = 12.0
MIN_REGION_AREA_PX = 6
# Glints are near-saturated corneal reflections, far brighter than the iris around the pupil.
GLINT_MARGIN_GREY = 30.0
EDGE_BAND_PX = 2
CANNY_LOW, CANNY_HIGH = 20, 50
# Canny runs around the region only, this far past its edge band (8 lost a few hysteresis-linked edges on real
# clips; 16 left every `bench outputs` set as it was).
CANNY_MARGIN_PX = 16
MIN_EDGE_POINTS = 8
EDGE_FIT_ITERATIONS = 2
EDGE_INLIER_PX = 1.0
# Flatter fits lose half their confidence: a lash or a lid crease, not a pupil (a camera 70 degrees off the
# pupil's axis still sees it at about 0.34).
MIN_AXIS_RATIO = 0.3
# Outline points whose outside (sampled this far out) differs from the outline's median outside by more than
# IRIS_TOLERANCE x (iris - pupil) border an occluder; at least this fraction of the outline must remain.
OUTSIDE_STEPS_PX = (2.0, 3.0, 4.0)
IRIS_TOLERANCE = 0.3
OCCLUSION_MIN_KEPT = 0.4
_OUTSIDE_STEPS = np.asarray(OUTSIDE_STEPS_PX, np.float64)[:, None]
_KERNEL_3 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
# Twice _KERNEL_3 in one pass: glints grow by 2 px (a diamond).
_GLINT_GROW = as_u8(cv2.dilate(np.pad(np.ones((1, 1), np.uint8), 2), _KERNEL_3, iterations=2))
# The ring around the region where the iris level is read: 2 to 3 pixels out.
_RING_OUTER = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
_FLOOD_FLAGS = 4 | cv2.FLOODFILL_FIXED_RANGE | cv2.FLOODFILL_MASK_ONLY | (255 << 8)


@dataclass(slots=True)
class RecentreMemo:
    """The tracked pupil's last first ray pass (see app.tracking.pupil.rays.fit_rays), to skip the next ones.

    That pass only re-centres the rays, and on a plainly seen pupil that looks as it did a frame ago its answer keeps
    its place relative to the grown region: the point is kept as an offset from the region's centroid and reused
    while the region's area stays within RECENTRE_AREA_TOLERANCE of its area then and the tracked pupil was found
    at least RECENTRE_MIN_CONFIDENCE, for at most RECENTRE_REUSES frames in a row. The ray fit checks each reuse; one
    it rejects (its work lost) pauses reuse for the next RECENTRE_REUSES frames.
    """

    area: float = 0.0
    offset: tuple[float, float] | None = None
    reuses: int = 0
    paused: int = 0  # frames left without reuse, after one the ray fit rejected

    def recentred(
        self, area: float, centroid: tuple[float, float], prior: PupilResult | None
    ) -> tuple[float, float] | None:
        """The re-centred point for a region of `area` at `centroid` (frame pixels), or None: run the first pass."""
        if (
            self.offset is None
            or prior is None
            or prior.confidence < RECENTRE_MIN_CONFIDENCE
            or self.reuses >= RECENTRE_REUSES
            or self.paused > 0
            or abs(area - self.area) > RECENTRE_AREA_TOLERANCE * self.area
        ):
            return None
        return centroid[0] + self.offset[0], centroid[1] + self.offset[1]

    def record(
        self,
        area: float,
        centroid: tuple[float, float],
        offered: bool,
        reused: bool,
        recentred: tuple[float, float] | None,
    ) -> None:
        """What the ray fit did with this region: reused the point it was `offered`, rejected it, or re-centred
        afresh (or could not)."""
        self.paused = RECENTRE_REUSES if offered and not reused else max(self.paused - 1, 0)
        if reused:
            self.reuses += 1
        elif recentred is None:
            self.clear()
        else:
            self.area, self.offset, self.reuses = area, (recentred[0] - centroid[0], recentred[1] - centroid[1]), 0

    def clear(self) -> None:
        self.offset, self.reuses, self.paused = None, 0, 0


def refine_pupil(
    gray: GrayU8,
    cx: float,
    cy: float,
    radius_px: float,
    algorithm: str,
    prior: PupilResult | None = None,
    memo: RecentreMemo | None = None,
) -> PupilResult:
    """The pupil ellipse near the coarse guess (cx, cy) of about `radius_px`; a null result when none.
    `prior` is the pupil tracked in the previous frame, if any (it helps fit a pupil that a lid half hides); `memo`
    carries the tracked pupil's ray re-centring from frame to frame (pass it only when refining that pupil)."""
    height, width = gray.shape
    half = int(max(ROI_RADII * radius_px, 10.0))
    x0, y0 = max(int(cx) - half, 0), max(int(cy) - half, 0)
    x1, y1 = min(int(cx) + half + 1, width), min(int(cy) + half + 1, height)
    roi = gray[y0:y1, x0:x1]
    if roi.shape[0] < 5 or roi.shape[1] < 5:
        return PupilResult.none(algorithm)
    grown = _grow_region(roi, cx - x0, cy - y0, radius_px)
    if grown is None:
        return PupilResult.none(algorithm)
    region, (rx, ry, rw, rh), seed, inside_level, outside_level = grown
    _, glints = cv2.threshold(roi, min(outside_level + GLINT_MARGIN_GREY, 254.0), 255, cv2.THRESH_BINARY)
    glints = as_u8(cv2.dilate(glints, _GLINT_GROW))
    # Moments over the region's bounding box only (binary moments cost by the pixel, and the roi is several pupil
    # widths across): the same area and central moments, the centroid shifted back.
    moments = cv2.moments(region[ry : ry + rh, rx : rx + rw], binaryImage=True)
    area = moments["m00"]
    centroid = (moments["m10"] / area + rx, moments["m01"] / area + ry)
    # The region's second moments give its size: a filled ellipse's variance along an axis is (axis / 4)^2.
    spread = (moments["mu20"] + moments["mu02"]) / area
    reach_px = 2.0 * math.sqrt(max(spread, 1.0))
    inside_centroid = region[
        min(int(centroid[1] + 0.5), roi.shape[0] - 1), min(int(centroid[0] + 0.5), roi.shape[1] - 1)
    ]
    start = centroid if inside_centroid else seed
    # The ray fit and the region fit each fail in their own way (a ray fit on few rim rays, a region fit
    # through a lid chord): the one whose visible outline contrasts best wins. The region fit is only worth
    # computing when it could still win.
    dark_level = inside_level + 0.5 * (outside_level - inside_level)
    roi_prior = None if prior is None else _in_roi(prior, x0, y0)
    frame_centroid = (centroid[0] + x0, centroid[1] + y0)
    hint = None if memo is None else memo.recentred(area, frame_centroid, prior)
    rays = fit_rays(roi, start, reach_px, inside_level, outside_level, glints, roi_prior, _shifted(hint, -x0, -y0))
    if memo is not None:
        memo.record(area, frame_centroid, hint is not None, rays.reused, _shifted(rays.recentred, x0, y0))
    best = _usable(rays.ellipse)
    best_score = -1.0 if best is None else visible_outline_score(roi, best, dark_level)
    if best_score + RAY_FIT_PREFERENCE < 1.0:
        region_fit = _usable(_fit_region(roi, region, glints, inside_level, half))
        if region_fit is not None:
            region_score = visible_outline_score(roi, region_fit, dark_level)
            clearly_better = region_score > best_score + RAY_FIT_PREFERENCE
            keeps_size = roi_prior is not None and best is not None and _keeps_size(region_fit, best, roi_prior)
            if best is None or clearly_better or (region_score > best_score and keeps_size):
                best = region_fit
    if best is None:
        return PupilResult.none(algorithm)
    (ex, ey), (ew, eh), angle = best
    confidence = outline_confidence(gray, ((ex + x0, ey + y0), (ew, eh), angle))
    if min(ew, eh) < MIN_AXIS_RATIO * max(ew, eh):
        confidence *= 0.5
    return PupilResult(float(ex + x0), float(ey + y0), float(ew), float(eh), float(angle), confidence, algorithm)


def _shifted(point: tuple[float, float] | None, dx: float, dy: float) -> tuple[float, float] | None:
    return None if point is None else (point[0] + dx, point[1] + dy)


def _keeps_size(candidate: Ellipse, other: Ellipse, prior: Ellipse) -> bool:
    """Whether `candidate` keeps the tracked pupil's major axis (within SIZE_KEPT) and `other` strays from it."""
    prior_major = max(*prior[1], 1.0)
    candidate_off = abs(max(candidate[1]) - prior_major) / prior_major
    other_off = abs(max(other[1]) - prior_major) / prior_major
    return candidate_off < SIZE_KEPT and other_off > SIZE_STRAYED


def _in_roi(pupil: PupilResult, x0: int, y0: int) -> Ellipse:
    return (pupil.x - x0, pupil.y - y0), (pupil.ellipse_w, pupil.ellipse_h), pupil.angle_deg


def _usable(ellipse: Ellipse | None) -> Ellipse | None:
    if ellipse is None:
        return None
    (ex, ey), (ew, eh), _ = ellipse
    return ellipse if math.isfinite(ex) and math.isfinite(ey) and min(ew, eh) >= 1.0 else None


def _grow_region(
    roi: GrayU8, cx: float, cy: float, radius_px: float
) -> tuple[GrayU8, tuple[int, int, int, int], tuple[float, float], float, float] | None:
    """Flood-fill the dark region from the darkest smoothed point near (cx, cy), re-thresholding half-way
    between its mean and the median of a ring around it: (region mask, its bounding box x, y, w, h, seed,
    inside level, outside level)."""
    seed_box = max(int(radius_px * 0.6) | 1, 3)
    search = max(int(radius_px), 2)
    lx, ly = int(cx), int(cy)
    sx0, sy0 = max(lx - search, 0), max(ly - search, 0)
    sx1, sy1 = min(lx + search + 1, roi.shape[1]), min(ly + search + 1, roi.shape[0])
    if sx1 <= sx0 or sy1 <= sy0:
        return None
    # The box mean only around the search window (with the box's reach): the same values as on the whole roi.
    reach = seed_box // 2
    bx0, by0 = max(sx0 - reach, 0), max(sy0 - reach, 0)
    smooth = cv2.blur(roi[by0 : sy1 + reach, bx0 : sx1 + reach], (seed_box, seed_box))
    near = smooth[sy0 - by0 : sy1 - by0, sx0 - bx0 : sx1 - bx0]
    darkest, _, (sx, sy), _ = cv2.minMaxLoc(near)
    seed_x, seed_y = sx + sx0, sy + sy0
    threshold = float(darkest) + INITIAL_THRESHOLD_GREY
    mask = np.zeros((roi.shape[0] + 2, roi.shape[1] + 2), np.uint8)
    inner = mask[1:-1, 1:-1]
    seed_value = int(roi[seed_y, seed_x])
    inside_level = outside_level = 0.0
    rx = ry = rw = rh = 0
    height, width = roi.shape
    reach = _RING_OUTER.shape[0] // 2
    for _ in range(THRESHOLD_ITERATIONS + 1):
        if seed_value > threshold:
            return None
        # Only the last fill's box holds marks (OpenCV re-marks the mask's 1-pixel frame itself on every call).
        inner[ry : ry + rh, rx : rx + rw] = 0
        # The fill's return value is the number of pixels it filled (into the cleared mask): the region's area.
        area, _, _, (rx, ry, rw, rh) = cv2.floodFill(
            roi, mask, (seed_x, seed_y), 0, (255,) * 4, (int(threshold) - seed_value,) * 4, _FLOOD_FLAGS
        )
        if area < MIN_REGION_AREA_PX:
            return None
        # The ring and the means only where the region can reach: its bounding box and the ring's width.
        bx0, by0 = max(rx - reach, 0), max(ry - reach, 0)
        bx1, by1 = min(rx + rw + reach, width), min(ry + rh + reach, height)
        box, box_roi = inner[by0:by1, bx0:bx1], roi[by0:by1, bx0:bx1]
        # The inner dilation lies inside the outer one: the difference is the ring (0 or 255).
        ring = as_u8(cv2.dilate(box, _RING_OUTER))
        ring -= as_u8(cv2.dilate(box, _KERNEL_3))
        ring_values = box_roi[ring > 0]
        if ring_values.size == 0:
            return None
        inside_level = cv2.mean(box_roi, box)[0]
        outside_level = median(ring_values)
        if outside_level <= inside_level:
            return None
        previous = int(threshold)
        threshold = inside_level + THRESHOLD_FRACTION * (outside_level - inside_level)
        if int(threshold) == previous:
            break  # the same threshold floods the same region again
    return as_u8(inner), (rx, ry, rw, rh), (float(seed_x), float(seed_y)), inside_level, outside_level


def _fit_region(roi: GrayU8, region: GrayU8, glints: GrayU8, inside_level: float, half: int) -> Ellipse | None:
    """Ellipse fitted to the region's outline without glint notches and occluder chords, refined on edges."""
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    # Glints inside the pupil leave holes: filling the outer contour removes them.
    filled = np.zeros_like(region)
    cv2.drawContours(filled, contours, -1, 255, -1)
    contour = max(contours, key=len)
    if len(contour) < 5:
        return None
    points = contour[:, 0, :]
    clean = points[glints[points[:, 1], points[:, 0]] == 0]
    clean = _iris_bordered(roi, clean, inside_level)
    fit_points = clean if len(clean) >= max(5, len(points) // 2) else points
    (ex, ey), (ew, eh), angle = fit_ellipse(fit_points)
    if len(fit_points) < len(points) and max(ew, eh) < 2.0 * half:
        # Glints on the rim cut notches: the glint pixels inside the fitted ellipse count as pupil.
        inside_ellipse = np.zeros_like(region)
        cv2.ellipse(inside_ellipse, ((ex, ey), (ew, eh), angle), 255, -1)
        filled |= inside_ellipse & glints
    return _fit_edges(roi, filled, glints, ((ex, ey), (ew, eh), angle))


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
    iris = median(outside)
    contrast = iris - inside_level
    if contrast <= 0:
        return points
    # Every sample must look like iris: a thin dark lid margin before bright skin averages to iris grey.
    keep = np.max(np.abs(outside - iris), axis=0) <= IRIS_TOLERANCE * contrast
    if np.count_nonzero(keep) < max(MIN_EDGE_POINTS, OCCLUSION_MIN_KEPT * len(points)):
        return points
    kept: npt.NDArray[np.int32] = points[keep]
    return kept


def _fit_edges(roi: GrayU8, filled: GrayU8, glints: GrayU8, initial: Ellipse) -> Ellipse:
    """Refit to Canny edges in a band around the region's outline, dropping glint edges and outliers."""
    # Only around the region: the band lies within EDGE_BAND_PX of it, and Canny there needs a few pixels more
    # (its gradients, and the weak edges its hysteresis follows out to a strong one). The roi is several pupil
    # widths across, and Canny costs by the pixel (120 x 120: 135 us, 40 x 40: 29 us).
    rx, ry, rw, rh = cv2.boundingRect(filled)
    if rw == 0:
        return initial
    margin = EDGE_BAND_PX + CANNY_MARGIN_PX
    x0, y0 = max(rx - margin, 0), max(ry - margin, 0)
    x1, y1 = min(rx + rw + margin, roi.shape[1]), min(ry + rh + margin, roi.shape[0])
    box = filled[y0:y1, x0:x1]
    outer = as_u8(cv2.dilate(box, _KERNEL_3, iterations=EDGE_BAND_PX))
    band = outer & ~as_u8(cv2.erode(box, _KERNEL_3, iterations=EDGE_BAND_PX))
    edges = as_u8(cv2.Canny(roi[y0:y1, x0:x1], CANNY_LOW, CANNY_HIGH, L2gradient=True)) & band & ~glints[y0:y1, x0:x1]
    ys, xs = np.nonzero(edges)
    if len(xs) < MIN_EDGE_POINTS:
        return initial
    points = np.column_stack([xs + x0, ys + y0]).astype(np.float64)
    ellipse = initial
    for _ in range(EDGE_FIT_ITERATIONS):
        distance = ellipse_distance_px(points, ellipse)
        keep = points[distance < max(EDGE_INLIER_PX, 2.0 * median(distance))]
        if len(keep) < MIN_EDGE_POINTS:
            return ellipse
        ellipse = fit_ellipse(keep)
    return ellipse

"""Centre-surround (Haar-like) search for the pupil: the darkest square against its surrounding ring.

The response at a centre is mean(ring) - mean(inner square). Box means come from `cv2.blur`, so a whole
image and several radii cost a few linear passes; peaks per radius become candidates for refinement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import numpy.typing as npt

GrayU8 = npt.NDArray[np.uint8]

# Outer square side = RING_RATIO x inner side: wide enough to see the iris around the pupil.
RING_RATIO = 2.0


@dataclass(frozen=True, slots=True)
class HaarHit:
    """A centre-surround peak: centre and inner half-size in the searched image's pixels."""

    x: float
    y: float
    radius_px: float
    response: float  # mean(ring) - mean(inner), grey levels; higher = more pupil-like


def haar_response(image: npt.NDArray[np.float32], radius_px: int) -> npt.NDArray[np.float32]:
    """mean(ring) - mean(inner square of half-size `radius_px`) at every pixel."""
    outer = _outer(radius_px)
    inner_side, outer_side = 2 * radius_px + 1, 2 * outer + 1
    inner_mean = cv2.blur(image, (inner_side, inner_side), borderType=cv2.BORDER_REPLICATE)
    outer_mean = cv2.blur(image, (outer_side, outer_side), borderType=cv2.BORDER_REPLICATE)
    inner_area, outer_area = float(inner_side**2), float(outer_side**2)
    ring_mean = (outer_mean * outer_area - inner_mean * inner_area) / (outer_area - inner_area)
    response: npt.NDArray[np.float32] = np.asarray(ring_mean - inner_mean, np.float32)
    return response


def _outer(radius_px: int) -> int:
    return max(round(radius_px * RING_RATIO), radius_px + 1)


def haar_candidates(
    gray: GrayU8,
    radii_px: list[int],
    window: tuple[int, int, int, int] | None = None,
    max_candidates: int = 4,
    peaks_per_radius: int = 1,
) -> list[HaarHit]:
    """The best `peaks_per_radius` peaks per radius (inside `window` = (x0, y0, x1, y1), half-open), strongest
    first, deduplicated. More than one per radius: local maxima (each the largest within the radius around it), as
    the strongest dark spot (a shadow at the frame's edge) can hold the best peak of every radius."""
    height, width = gray.shape
    x0, y0, x1, y1 = window if window is not None else (0, 0, width, height)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x1 <= x0 or y1 <= y0:
        return []
    # Only the window and the reach of the largest box around it: the box means inside the window are the
    # same as on the whole image, for a fraction of the work when tracking.
    margin = max((_outer(r) for r in radii_px), default=0)
    cx0, cy0 = max(x0 - margin, 0), max(y0 - margin, 0)
    cx1, cy1 = min(x1 + margin, width), min(y1 + margin, height)
    image: npt.NDArray[np.float32] = gray[cy0:cy1, cx0:cx1].astype(np.float32)
    wx0, wy0, wx1, wy1 = x0 - cx0, y0 - cy0, x1 - cx0, y1 - cy0
    hits: list[HaarHit] = []
    for radius in radii_px:
        response = haar_response(image, radius)[wy0:wy1, wx0:wx1]
        if peaks_per_radius <= 1:
            _, value, _, (col, row) = cv2.minMaxLoc(response)
            hits.append(HaarHit(float(col + x0), float(row + y0), float(radius), float(value)))
            continue
        hits.extend(_peaks(response, radius, peaks_per_radius, x0, y0))
    hits.sort(key=lambda hit: -hit.response)
    unique: list[HaarHit] = []
    for hit in hits:
        if all(math.hypot(hit.x - u.x, hit.y - u.y) > 0.5 * min(hit.radius_px, u.radius_px) for u in unique):
            unique.append(hit)
    return unique[:max_candidates]


def _peaks(response: npt.NDArray[np.float32], radius: int, count: int, x0: int, y0: int) -> list[HaarHit]:
    """The `count` strongest local maxima of `response` (each the largest within `radius` of it)."""
    side = 2 * radius + 1
    peak = response >= cv2.dilate(response, np.ones((side, side), np.uint8))
    rows, cols = np.nonzero(peak)
    values = response[rows, cols]
    order = np.argsort(-values, kind="stable")[:count]
    return [HaarHit(float(cols[k] + x0), float(rows[k] + y0), float(radius), float(values[k])) for k in order]


def radii_for(side_px: int, min_frac: float = 0.03, max_frac: float = 0.1, count: int = 5) -> list[int]:
    """Inner half-sizes to try, as fractions of the smaller frame side (pupils in eye crops)."""
    return list(_radii(side_px, min_frac, max_frac, count))


@lru_cache(maxsize=32)
def _radii(side_px: int, min_frac: float, max_frac: float, count: int) -> tuple[int, ...]:
    radii = np.geomspace(max(side_px * min_frac, 1.5), max(side_px * max_frac, 2.5), count)
    return tuple(sorted({max(round(float(r)), 1) for r in radii}))

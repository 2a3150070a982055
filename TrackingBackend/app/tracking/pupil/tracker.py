"""The ordered pupil-algorithm list with fallback, and tracking over time.

Every algorithm returns a `PupilResult` with a confidence in [0, 1]; the next one runs when the
confidence is below `algorithm.confidence_threshold`. Coarse Haar candidates are computed once per frame
and shared. While the pupil is tracked, the last good pupil itself is refined first and a confident find
that continues it ends the search; otherwise the search looks in a window around the last pupil, then
over the whole frame. A candidate is never refined twice in a frame, nor one inside a pupil already found
there with high confidence, and a frame refines at most MAX_REFINES_PER_FRAME candidates in all.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from itertools import islice

import cv2
import numpy as np
import numpy.typing as npt

from app.config.models import AlgorithmConfig, AlgorithmName
from app.tracking.pupil.blob import detect_pupil_blob
from app.tracking.pupil.ellipse import exact_median, outline_confidence, shrunk
from app.tracking.pupil.haar import HaarHit, haar_candidates, radii_for
from app.tracking.pupil.ransac import ransac_pupil
from app.tracking.pupil.refine import RecentreMemo, refine_pupil
from app.tracking.results import PupilResult

GrayU8 = npt.NDArray[np.uint8]

# The coarse search runs on a frame shrunk to about this side, whatever the camera's resolution.
COARSE_SIDE_PX = 64
MAX_CANDIDATES = 3
# A refinement this confident ends the candidate loop early.
SURE_CONFIDENCE = 0.95
# Below this confidence a find in the tracking window is compared with a whole-frame search.
LOCAL_ACCEPT_CONFIDENCE = 0.8
# Tracking window half-size, in pupil radii around the last good pupil.
TRACK_WINDOW_RADII = 3.0
# The inner square of the Haar feature sits inside the pupil: its half-size is about this x the radius.
HAAR_TO_PUPIL_RADIUS = 1.15
HSF_RADIUS_FACTORS = (0.7, 0.85, 1.0, 1.2, 1.4)
# A find at least this confident that moved less than CONTINUE_MOVE x the pupil's size and changed size by
# less than CONTINUE_SIZE is taken at once while tracking. A partly hidden pupil's outline scores 0.6-0.7: at
# 0.7 such frames searched every candidate for nothing better (the hard synthetic set's p95 3.98 -> 2.37 ms,
# real clips 10-25 % cheaper; accuracy within +-0.004 on the dev seeds).
CONTINUE_CONFIDENCE = 0.6
CONTINUE_MOVE = 0.25
CONTINUE_SIZE = 0.2
# At most this many candidate refinements per frame, all algorithms together: a real-time bound on a frame's
# cost (a frame without a clear pupil could refine every candidate with every algorithm). 6 leaves MEYE and the
# synthetic sets as they were; 4 cut the tail more but lost MEYE frames whose previous file is another moment.
MAX_REFINES_PER_FRAME = 6
# A candidate inside (the inscribed circle of) a pupil found this confidently is not refined again.
DEDUPE_CONFIDENCE = 0.9
# A pupil tracked less surely than ESCAPE_BELOW for ESCAPE_AFTER frames in a row (then every ESCAPE_EVERY-th such
# frame) may be a shadow the track locked onto while the pupil shows elsewhere: the strongest ESCAPE_CANDIDATES
# whole-frame peaks outside it (ESCAPE_PEAKS_PER_RADIUS per Haar radius, as the strongest shadow can hold the
# best peak of every radius) are refined, and one ESCAPE_MARGIN more confident (and at least ESCAPE_BELOW) wins.
ESCAPE_BELOW = 0.9
ESCAPE_AFTER = 2
ESCAPE_EVERY = 6
ESCAPE_CANDIDATES = 2
ESCAPE_PEAKS_PER_RADIUS = 3
ESCAPE_MARGIN = 0.1
# ... and lies outside the tracked find (another fit of the same pupil is not what this looks for), is not much
# smaller than it (a tiny dark fleck by a glint or a lash outlines clearly too).
ESCAPE_MIN_SIZE = 0.8
# ... and is darker inside (median grey of its inner part, glints aside) than the tracked find, by at least this.
ESCAPE_DARKER_GREY = 0.0
# A find whose centre lies outside the frame keeps this fraction of its confidence: it is a dark corner or the
# frame's edge (real clips tracked one for up to 13 frames; MEYE's closed eyes gave 18), and a real pupil that far
# out shows as a sliver that no fit places well.
OUTSIDE_FRAME_CONFIDENCE = 0.5
UNAVAILABLE_ALGORITHMS = frozenset({AlgorithmName.LEAP})


@dataclass(frozen=True, slots=True)
class Candidate:
    """A coarse guess in full-resolution pixels."""

    x: float
    y: float
    radius_px: float
    response: float
    tracked: bool = False  # the tracked pupil itself, refined again


class PupilTracker:
    """Runs the configured algorithms in order; remembers the last good pupil to search near it."""

    def __init__(self, config: AlgorithmConfig) -> None:
        self.config = config
        self.unavailable_algorithms: list[str] = [
            n.value for n in config.algorithm_order if n in UNAVAILABLE_ALGORITHMS
        ]
        self._last: PupilResult | None = None
        self._refines_left = MAX_REFINES_PER_FRAME
        self._refined: dict[AlgorithmName, set[Candidate]] = {}  # candidates refined this frame, by algorithm
        self._recentre = RecentreMemo()  # the tracked pupil's ray re-centring, frame to frame
        self._unsure = 0  # frames in a row with a pupil found less surely than ESCAPE_BELOW
        # Candidates refined so far, all frames: what a frame costs is mostly its refinements (about 1 a frame on a
        # steadily tracked eye, 2-3 on hard real footage).
        self.refinements = 0

    def update_config(self, config: AlgorithmConfig) -> None:
        self.config = config
        self.unavailable_algorithms = [n.value for n in config.algorithm_order if n in UNAVAILABLE_ALGORITHMS]

    def reset(self) -> None:
        self._last = None
        self._recentre.clear()

    def detect(self, gray: GrayU8, max_refines: int = MAX_REFINES_PER_FRAME) -> PupilResult:
        """The best pupil of the algorithms in order, refining at most `max_refines` candidates in all."""
        threshold = self.config.confidence_threshold
        best = PupilResult.none()
        candidates: dict[bool, list[Candidate]] = {}
        self._refines_left = max_refines
        self._refined = {}
        for name in self.config.algorithm_order:
            if name in UNAVAILABLE_ALGORITHMS:
                continue
            result = self._run(name, gray, candidates)
            if result.confidence > best.confidence:
                best = result
            if result.confidence >= threshold:
                break
        self._unsure = self._unsure + 1 if threshold <= best.confidence < ESCAPE_BELOW else 0
        if self._unsure >= ESCAPE_AFTER and (self._unsure - ESCAPE_AFTER) % ESCAPE_EVERY == 0:
            best = self._escape(gray, best)
        self._last = best if best.confidence >= threshold else None
        if self._last is None:
            self._recentre.clear()
        return best

    def _escape(self, gray: GrayU8, best: PupilResult) -> PupilResult:
        """`best`, or a clearly more confident pupil at one of the strongest whole-frame peaks outside it."""
        name = next((n for n in self.config.algorithm_order if n not in UNAVAILABLE_ALGORITHMS), None)
        if name is None or name == AlgorithmName.BLOB:
            return best
        reach = max(best.ellipse_w, best.ellipse_h) / 2.0
        min_size = ESCAPE_MIN_SIZE * math.sqrt(best.ellipse_w * best.ellipse_h)
        level = inner_level(gray, best) - ESCAPE_DARKER_GREY
        seen = self._refined.setdefault(name, set())
        # Only peaks outside the tracked find, not refined this frame, whose inner square is already darker than the
        # tracked find's inside (a cheap look: most frames refine nothing more).
        chosen = (
            c
            for c in coarse_candidates(gray, None, ESCAPE_PEAKS_PER_RADIUS)
            if math.hypot(c.x - best.x, c.y - best.y) >= reach and c not in seen and _box_level(gray, c) <= level
        )
        found = best
        for candidate in islice(chosen, ESCAPE_CANDIDATES):
            if self._refines_left <= 0:
                break
            self._refines_left -= 1
            self.refinements += 1
            result = run_on_candidate(name, gray, candidate, None)
            if (
                result.confidence >= max(best.confidence + ESCAPE_MARGIN, ESCAPE_BELOW)
                and result.confidence > found.confidence
                and math.hypot(result.x - best.x, result.y - best.y) >= reach
                and math.sqrt(result.ellipse_w * result.ellipse_h) >= min_size
                and inner_level(gray, result) <= level
            ):
                found = result
        if found is not best:
            self._unsure = 0
            self._recentre.clear()
        return found

    def _continues(self, found: PupilResult) -> bool:
        """A confident find that continues the tracked pupil ends the search (no other candidate is tried)."""
        last = self._last
        return last is not None and found.confidence >= CONTINUE_CONFIDENCE and _similar(found, last)

    def _candidates(self, gray: GrayU8, local: bool, cache: dict[bool, list[Candidate]]) -> Iterator[Candidate]:
        """Candidates of one scope; near the last pupil, first that pupil itself (the coarse search runs only
        when it is not found again)."""
        if local and self._last is not None:
            last = self._last
            yield Candidate(
                last.x, last.y, max(last.ellipse_w, last.ellipse_h) / 2.0 / HAAR_TO_PUPIL_RADIUS, 0.0, tracked=True
            )
        if local not in cache:
            cache[local] = coarse_candidates(gray, self._last if local else None)
        yield from cache[local]

    def _run(self, name: AlgorithmName, gray: GrayU8, cache: dict[bool, list[Candidate]]) -> PupilResult:
        if name == AlgorithmName.BLOB:
            return within_frame(detect_pupil_blob(gray, self.config.blob), gray)
        scopes = [True, False] if self._last is not None else [False]
        best = PupilResult.none(name.value)
        tried: list[PupilResult] = []
        seen = self._refined.setdefault(name, set())
        for local in scopes:
            for candidate in islice(self._candidates(gray, local, cache), 1 if name == AlgorithmName.HSF else None):
                # The whole-frame search often finds the window's candidates again: same input, same result. And a
                # candidate inside a pupil already refined this frame grows the same region again.
                if candidate in seen or any(_inside(candidate, done) for done in tried):
                    continue
                if self._refines_left <= 0:
                    return best
                self._refines_left -= 1
                self.refinements += 1
                seen.add(candidate)
                memo = self._recentre if candidate.tracked else None
                result = run_on_candidate(name, gray, candidate, self._last, memo)
                if result.confidence >= DEDUPE_CONFIDENCE:
                    tried.append(result)
                if result.confidence > best.confidence:
                    best = result
                if best.confidence >= SURE_CONFIDENCE or (local and self._continues(best)):
                    return best
            # A weak find near the last pupil may be a lash or a shadow: the whole frame gets a look too.
            if best.confidence >= max(self.config.confidence_threshold, LOCAL_ACCEPT_CONFIDENCE if local else 0.0):
                return best
        return best


def _similar(found: PupilResult, last: PupilResult) -> bool:
    """The same pupil a frame later: moved less than a fraction of its size, about the same size."""
    size, last_size = max(found.ellipse_w, found.ellipse_h), max(last.ellipse_w, last.ellipse_h)
    moved = math.hypot(found.x - last.x, found.y - last.y)
    return moved < CONTINUE_MOVE * last_size and abs(size - last_size) < CONTINUE_SIZE * last_size


def inner_level(gray: GrayU8, pupil: PupilResult, fraction: float = 0.7) -> float:
    """Median grey inside the pupil's ellipse shrunk by `fraction` (the rim and most glints left out); 255 if none."""
    height, width = gray.shape
    half_w, half_h = fraction * pupil.ellipse_w / 2.0, fraction * pupil.ellipse_h / 2.0
    reach = max(half_w, half_h)
    x0, y0 = max(int(pupil.x - reach), 0), max(int(pupil.y - reach), 0)
    x1, y1 = min(int(pupil.x + reach) + 2, width), min(int(pupil.y + reach) + 2, height)
    if x1 <= x0 or y1 <= y0:
        return 255.0
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    ellipse = ((pupil.x - x0, pupil.y - y0), (2.0 * half_w, 2.0 * half_h), pupil.angle_deg)
    cv2.ellipse(mask, ellipse, 255, -1)
    inside = gray[y0:y1, x0:x1][mask > 0]
    return exact_median(inside) if inside.size else 255.0


def _box_level(gray: GrayU8, candidate: Candidate) -> float:
    """Median grey of the candidate's inner Haar square."""
    height, width = gray.shape
    half = max(int(candidate.radius_px), 1)
    x, y = int(candidate.x + 0.5), int(candidate.y + 0.5)
    box = gray[max(y - half, 0) : min(y + half + 1, height), max(x - half, 0) : min(x + half + 1, width)]
    return exact_median(box) if box.size else 255.0


def _inside(candidate: Candidate, found: PupilResult) -> bool:
    """Whether the candidate's centre lies within the found ellipse's inscribed circle."""
    inner_radius = min(found.ellipse_w, found.ellipse_h) / 2.0
    return math.hypot(candidate.x - found.x, candidate.y - found.y) < inner_radius


def coarse_candidates(gray: GrayU8, near: PupilResult | None = None, peaks_per_radius: int = 1) -> list[Candidate]:
    """Haar peaks on a shrunk frame (inside a window around `near` when given), in full-resolution pixels: the best
    one per radius, or `peaks_per_radius`, strongest first (MAX_CANDIDATES of them, or that many per radius)."""
    small, scale = shrunk(gray, COARSE_SIDE_PX)
    window: tuple[int, int, int, int] | None = None
    if near is not None:
        reach = TRACK_WINDOW_RADII * max(near.ellipse_w, near.ellipse_h) / 2.0 / scale
        window = (
            int(near.x / scale - reach),
            int(near.y / scale - reach),
            int(near.x / scale + reach) + 1,
            int(near.y / scale + reach) + 1,
        )
    hits: list[HaarHit] = haar_candidates(
        small, radii_for(min(small.shape)), window, MAX_CANDIDATES * peaks_per_radius, peaks_per_radius
    )
    offset = scale / 2.0 - 0.5
    return [Candidate(h.x * scale + offset, h.y * scale + offset, h.radius_px * scale, h.response) for h in hits]


def run_on_candidate(
    name: AlgorithmName,
    gray: GrayU8,
    candidate: Candidate,
    last: PupilResult | None = None,
    memo: RecentreMemo | None = None,
) -> PupilResult:
    """One algorithm on one coarse candidate; `last` is the pupil tracked in the previous frame, if any, and `memo`
    its refinement's re-centring (HSRAC; see app.tracking.pupil.refine.RecentreMemo)."""
    if name == AlgorithmName.HSRAC:
        found = refine_pupil(gray, candidate.x, candidate.y, candidate.radius_px, "HSRAC", last, memo)
    elif name == AlgorithmName.RANSAC:
        found = ransac_pupil(gray, candidate.x, candidate.y, candidate.radius_px * HAAR_TO_PUPIL_RADIUS)
    elif name == AlgorithmName.AHSF:
        found = dark_centroid(gray, candidate, "AHSF")
    else:
        found = haar_circle(gray, candidate, "HSF")
    return within_frame(found, gray)


def within_frame(found: PupilResult, gray: GrayU8) -> PupilResult:
    """`found`, its confidence cut to OUTSIDE_FRAME_CONFIDENCE of itself when its centre lies outside the frame."""
    height, width = gray.shape
    if 0.0 <= found.x < width and 0.0 <= found.y < height:
        return found
    return replace(found, confidence=found.confidence * OUTSIDE_FRAME_CONFIDENCE)


def haar_circle(gray: GrayU8, candidate: Candidate, algorithm: str) -> PupilResult:
    """The Haar hit itself as a circle; the radius (coarse: the search's radius steps) whose outline contrasts best."""
    best = PupilResult.none(algorithm)
    for factor in HSF_RADIUS_FACTORS:
        diameter = 2.0 * candidate.radius_px * HAAR_TO_PUPIL_RADIUS * factor
        ellipse = ((candidate.x, candidate.y), (diameter, diameter), 0.0)
        confidence = outline_confidence(gray, ellipse)
        if confidence > best.confidence:
            best = PupilResult(candidate.x, candidate.y, diameter, diameter, 0.0, confidence, algorithm)
    return best


def dark_centroid(gray: GrayU8, candidate: Candidate, algorithm: str) -> PupilResult:
    """Centroid of the pixels darker than half-way between the Haar box and its ring (adaptive threshold)."""
    height, width = gray.shape
    half = int(candidate.radius_px * 2.0) + 1
    x0, y0 = max(int(candidate.x) - half, 0), max(int(candidate.y) - half, 0)
    x1, y1 = min(int(candidate.x) + half + 1, width), min(int(candidate.y) + half + 1, height)
    roi = gray[y0:y1, x0:x1]
    if roi.size < 9:
        return PupilResult.none(algorithm)
    inner_half = max(int(candidate.radius_px), 1)
    ix, iy = int(candidate.x) - x0, int(candidate.y) - y0
    inner = roi[max(iy - inner_half, 0) : iy + inner_half + 1, max(ix - inner_half, 0) : ix + inner_half + 1]
    inner_level = float(np.mean(inner))
    threshold = inner_level + candidate.response / 2.0
    dark = (roi < threshold).astype(np.uint8)
    moments = cv2.moments(dark, binaryImage=True)
    if moments["m00"] < 4:
        return haar_circle(gray, candidate, algorithm)
    cx, cy = moments["m10"] / moments["m00"] + x0, moments["m01"] / moments["m00"] + y0
    diameter = 2.0 * float(np.sqrt(moments["m00"] / np.pi))
    ellipse = ((cx, cy), (diameter, diameter), 0.0)
    confidence = outline_confidence(gray, ellipse)
    return PupilResult(float(cx), float(cy), diameter, diameter, 0.0, confidence, algorithm)

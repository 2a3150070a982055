"""Eyelid openness, blink, widen, squeeze and pupil dilation from image cues, self-calibrating per user.

The lids are measured along a vertical band through the pupil (or where it last was): with glints removed,
the run of rows darker than the profile's own dark/bright split (Otsu) is the part of the eye the lids leave
uncovered; its ends are the upper and lower lid. Where sclera shows between the iris and a lid, the run ends
at the iris' rim (its size is learnt from the iris' width, which the lids never cover): the search goes on
across the sclera to the lid's dark margin (below the iris, to the lower lid's thin bright wet margin: its
skin is often as bright as the sclera), or the edge is marked censored; a run that goes on past the iris' upper
rim (a raised lid's margin and the shadow under it) ends at that lid; a run that stops on a paler band inside
the iris (low contrast) goes on to the lid's climb beyond it. The user's relaxed lids are learnt online as a
function of the pupil position (the lids follow vertical gaze part of the way, a prior until the samples span it;
the corner line is tilted; the gap is smaller towards the eye corners): a robust fit that keeps the open cluster,
so blinks, squints and widened eyes do not drag it, corrected where relaxed lids were seen by what was measured
there (lashes and shadow bias the measurement differently at different gaze). The lower lid is also learnt on its
own, from every frame where it is measured (the upper envelope of its offsets: squints and blinks raise it).

Against that baseline a narrower gap is split into closing and squeezing by how much of it the lower lid
does: in a blink or a droop the upper lid does most of the travel, in a squint the lower lid rises about as
much as the upper lid falls. A lower lid risen alone (the upper lid not lowered with it) is a baseline not
caught up with this gaze yet: squeeze is reported only as far as the upper lid's drop backs it. An upper lid
raised above its relaxed place is `widen` (one at the iris' rim counts as raised at least that far), read only
where the relaxed lids are known (enough samples, pupil positions the fit has seen); samples taken while widened
stay out of the fit. Squeeze is weighed by how steadily the lower lid is measured: on low-resolution cameras its
measured place wanders by more than a squint moves it.

Some eyes and cameras lose the upper lid in the lashes most of the time (counted with the pupil plainly seen in
the upper half of its heights: looking down loses it for any eye). There the upper lid is not trusted even where
found: squeeze is the lower lid's rise against its own baseline, in iris units (less towards the eye's corners),
and openness is what the pupil says (open, capped by how much of it shows); a blink still starts on the lids'
reading. Without the upper lid a half-closed eye cannot be told from a squint there (both raise the lower lid and
leave most of the pupil showing): it reads as a squint.

The pupil checks the lids. Two measures of it, both against the user's own running statistics: `visibility`,
how plainly a whole pupil is seen (confident, of the usual size, not flattened from above against the
usual height-to-width ratio, which an off-axis camera sets, and as dark inside its ellipse as usual), and
`presence`, how much of a real pupil shows at all (the same, but a pupil half under a lid still counts).
Presence caps openness, so a closed eye reads closed even when the lid cue is fooled by lashes; visibility
floors it, so lid noise alone never reads a plainly seen eye as closed (no flicker on a still open eye). The
blink flag is openness under 0.2 with the pupil mostly hidden, with hysteresis.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.ma  # np.median imports it on its first call: 20-50 ms, at start-up rather than mid-tracking
import numpy.typing as npt

from app.tracking.pupil.ellipse import cos_sin_deg
from app.tracking.results import PupilResult

GrayU8 = npt.NDArray[np.uint8]

HISTORY_FRAMES = 900
# Baselines are refreshed every this many accepted samples (medians of a deque are not free).
REFRESH_EVERY = 15
MIN_BASELINE_SAMPLES = 20
# The lids count as learnt (`LidEstimator.settled`) after this many baseline samples.
SETTLED_SAMPLES = 300
# Share of a gap loss done by the lower lid: closing (blink, droop) and squinting.
LOWER_SHARE_CLOSING, LOWER_SHARE_SQUEEZE = 0.25, 0.46
# A full squeeze narrows the relaxed gap by about this fraction; a full widen opens it by this fraction.
SQUEEZE_GAP_LOSS, WIDEN_GAP_GAIN = 0.4, 0.26
# The squint reported is at most this many times what the upper lid's drop allows.
SQUEEZE_UPPER_SLACK = 1.2
# The baseline fit keeps samples whose gap is within this band (fraction of the gap) around the fit.
BASELINE_KEEP = (-0.06, 0.1)
BASELINE_FIT_ROUNDS = 3
BASELINE_START_PERCENTILE = 65
# Samples taken while the lids read widened at least this much are left out of the relaxed fit (the fit starts
# from the wider gaps, so a held widen would otherwise become the relaxed lids), unless that leaves fewer than
# this share of the samples (a baseline that started widened must still come back).
WIDENED_SAMPLE, MIN_UNWIDENED_SHARE = 0.3, 0.5
MIN_FIT_SAMPLES = 60
# Lids follow the pupil's vertical movement about this far: a prior on the lower lid's slope with the
# pupil's height (in relaxed gaps), weighted as BASELINE_PRIOR_WEIGHT squared units of that feature.
LID_GAZE_FOLLOW_PRIOR = 0.5
BASELINE_PRIOR_WEIGHT = 2.0
LOWER_FEATURES, VERTICAL_FEATURE = 4, 2
# The measured lids' bias depends on where the pupil is (lashes, shadow, the iris' rim near a lid), so the
# smooth fit is corrected by what the samples near the pupil's position say: cells of this size (fraction of
# the relaxed gap) over pupil positions, trusted fully from LOCAL_FULL_SAMPLES samples; a cell's relaxed gap is
# this percentile of its samples (the open cluster: squints and blinks narrow the gap, widening is rarer).
LOCAL_CELL, LOCAL_FULL_SAMPLES, LOCAL_MIN_SAMPLES = 0.15, 12, 4
LOCAL_GAP_PERCENTILE = 65
# A run end this close to the iris' rim (pixels, or fraction of the iris' half-height) is the rim, not a lid;
# the lid beyond it is searched for over this fraction of the iris' half-height.
IRIS_RIM_TOLERANCE_PX, IRIS_RIM_TOLERANCE = 2.0, 0.1
SCLERA_SEARCH = 0.8
# The lower lid's wet margin over the sclera: a bright line looked for this many columns either side of the
# pupil, from this many rows below the iris' rim, standing this many grey levels (and this many times the
# profile's own spread) above the rows two away. The run ends sit a couple of rows inside a lid (smoothing)
# and the margin just outside it: the margin is put this many rows up to measure the lid as the runs do.
LOWER_RIDGE_HALF_WIDTH_PX, LOWER_RIDGE_FROM_RIM_PX = 4, 2
LOWER_RIDGE_MIN_LEVELS, LOWER_RIDGE_MIN_TO_SPREAD = 3.0, 4.0
LOWER_RIDGE_TO_EDGE_PX = 3.0
# A dark run that ends this many rows short of a flat band (PALER_BAND_ROWS rows varying by less than
# PALER_BAND_FLATNESS of the step) followed, within the sclera search, by a climb of at least PALER_BAND_MIN_STEP
# grey levels ended inside the iris: the lower lid is that climb.
PALER_BAND_FROM_PX, PALER_BAND_ROWS, PALER_BAND_MIN_STEP, PALER_BAND_FLATNESS = 2, 4, 12.0, 0.3
# A lid farther from the pupil than this x the iris' half-height (or x the pupil radius before the iris is
# known) is not measured there: the run went on into shadow.
MAX_LID_TO_IRIS, MAX_LID_TO_PUPIL = 1.5, 6.0
# The iris is at least this much wider than the pupil (a smaller run is not the iris).
MIN_IRIS_TO_PUPIL = 1.3
IRIS_SAMPLE_EVERY = 4
# With no pupil seen, openness is at most this (a lid cue alone is easily fooled by lashes).
NO_PUPIL_OPENNESS_CAP = 0.15
# Pupil visibility ramps: (value at 0, value at 1) for confidence and minor/major axis ratio.
VISIBLE_CONFIDENCE = (0.55, 0.75)
# A pupil partly under a lid is found at a lower confidence (less of its outline shows): still present.
PRESENT_CONFIDENCE = (0.5, 0.7)
VISIBLE_ASPECT = (0.3, 0.45)
# A lid covering the pupil flattens it from above: its height-to-width ratio against the user's usual
# ratio (an off-axis camera or a sideways gaze narrows the pupil across, which does not count).
VISIBLE_HEIGHT_TO_USUAL = (0.35, 0.75)
PRESENT_HEIGHT_TO_USUAL = (0.35, 0.6)
# The dark-fraction test looks inside the pupil's ellipse shrunk by this factor (its rim is blurred) and
# compares it with the ring between these scales.
DARK_INNER_SCALE, DARK_RING_SCALE = 0.8, (1.3, 1.8)
DARK_SAMPLES_PER_RADIUS = 6
# Visibility and presence ramp with the dark fraction against the user's usual dark fraction (glints lower
# it): a plainly seen pupil is dark nearly all over; one half under a lid is still present.
VISIBLE_DARK_TO_USUAL = (0.35, 0.75)
PRESENT_DARK_TO_USUAL = (0.1, 0.4)
# Confidence from which a pupil's shape and size are taken as the user's usual (whatever the lids do).
USUAL_SAMPLE_CONFIDENCE = 0.75
# A detector's confidence scale depends on the camera (blur, resolution): with a user whose pupil is
# usually found at a lower confidence, the ramp moves down to end this far below their usual confidence.
VISIBLE_CONFIDENCE_BELOW_USUAL = 0.1
# Pupil size may differ from its recent size (the median of the last RECENT_SIZE_FRAMES plainly seen pupils:
# a blink is shorter, a change of dilation slower) by this log-ratio before visibility drops. A shape found
# on closed lids (the dark slit between nearly closed lids, the lash line) is mostly larger: less tolerance.
SIZE_TOLERANCE_LOG, LARGER_TOLERANCE_LOG, SIZE_SPAN_LOG = 0.8, 0.5, 0.4
RECENT_SIZE_FRAMES = 60
# Blink hysteresis on openness (a blink is openness < 0.2); a blink starts only while the pupil is mostly
# hidden (presence under BLINK_VISIBLE_ON) and ends once it is plainly seen again (visibility), so lid noise
# alone cannot flag an open eye.
BLINK_ON, BLINK_OFF = 0.2, 0.3
BLINK_VISIBLE_ON, BLINK_VISIBLE_OFF = 0.5, 0.9
# During a blink, a pupil found farther than this many radii (plus the growth per blink frame) from where it
# was last seen is a shape on the closed lids, not the pupil.
BLINK_JUMP_RADII, BLINK_JUMP_GROWTH_RADII = 2.0, 0.5
# The pupil keeps its size through a blink: during one, a shape much smaller than the recent pupil and more
# than a radius away from it is a piece of lash line or slit (a reopening pupil shows its lower part in place).
BLINK_MIN_SIZE_RATIO = 0.6
# A plainly seen pupil means the lids are mostly open: openness is at least this (at full visibility),
# ramping from 0 at VISIBLE_FLOOR_FROM; the lid cue alone is easily fooled by lashes and shadow.
VISIBLE_FLOOR_FROM, VISIBLE_OPENNESS_FLOOR = 0.5, 0.7
CLOSED_GAP_RATIO = 0.15
# A relaxed eye varies a little around its baseline: this dead zone keeps widen and squeeze at 0.
WIDEN_DEAD_ZONE, SQUEEZE_DEAD_ZONE = 0.03, 0.1
# An upper lid at the iris' rim counts as raised by this much (in relaxed gaps) less than the rim is above the
# relaxed lid: the rim's edge is blurred and the relaxed lid is a fit.
CENSORED_RAISE_MARGIN = 0.05
# Widen is reported once the relaxed lids were fitted on this many samples, and only for pupil positions within
# WIDEN_REACH relaxed gaps of those the fit has seen: elsewhere the fit extrapolates, and looking down, for one,
# the upper lid stands farther above the pupil than a fit from higher gaze expects (a false widen).
WIDEN_MIN_SAMPLES, WIDEN_REACH = 150, 0.075
# A squint may hide part of the pupil under either lid: it is reported while the pupil's presence is this much.
SQUEEZE_MIN_PRESENCE = 0.3
# A full squint raises the lower lid by about this fraction of the iris' half-height.
SQUEEZE_LOWER_RISE_TO_IRIS = 0.3
# The eye's opening is about this many iris radii wide either side of its middle (palpebral fissure ~30 mm, iris
# ~12 mm across); a lid's travel falls off across it as a parabola, here never below MIN_LID_SHAPE.
EYE_HALF_WIDTH_TO_IRIS, MIN_LID_SHAPE = 2.5, 0.5
# The lower-lid-only baseline keeps residuals within these many spreads below and above its fit, and reaches
# this fraction of the span of pupil positions seen beyond it.
LOWER_KEEP_SPREADS = (2.5, 4.0)
LOWER_EXTRAPOLATION = 0.5
# Squeeze is read in full while the lower lid's relaxed samples scatter around their fit (a robust standard
# deviation) by at most the first fraction of a full squint's rise, and not at all from the second (low-resolution
# and blurred cameras: the lid's measured place wanders by more than a squint moves it).
LOWER_NOISE_TO_RISE = (0.15, 0.3)
# It is refitted every this many samples (it takes every frame with a lower lid: a refit is not free).
LOWER_REFRESH_EVERY = 15
# Some eyes and cameras lose the upper lid in the lashes most of the time; where it is lost in this share of the
# frames (ramp) it is not trusted even where found: squeeze comes from the lower lid, openness from the pupil.
UPPER_LOST_SHARE = (0.35, 0.55)
UPPER_LOST_FRAMES, UPPER_LOST_MIN_FRAMES, UPPER_LOST_VISIBILITY, UPPER_LOST_MIN_SPAN = 300, 30, 0.9, 0.5
# Lids read as squinted, widened or closed by less than this count as relaxed samples for the local correction.
RELAXED_READING = 0.1
MIN_DILATION_SAMPLES = 60
MIN_DILATION_RANGE = 0.1


@dataclass(frozen=True, slots=True)
class LidState:
    openness: float
    blink: bool  # the lids are closed (hysteresis); the pipeline also flags closing eyes (app.tracking.eye_closure)
    dilation: float
    widen: float
    squeeze: float
    aperture_px: float
    visibility: float = 0.0  # [0, 1], how plainly the pupil shows: confident, of its usual size and shape, dark


@dataclass(frozen=True, slots=True)
class LidEdges:
    """Upper and lower lid rows (sub-pixel, image y) at the measured column; gap = lower - upper.

    A censored edge is where the dark run ended at the iris' rim and no lid was found across the sclera beyond
    it: the lid is at least that far from the pupil (it may sit on the rim), but where exactly is not seen.
    NaN: the run went on past any plausible lid (shadow, vignetting), so that lid is not measured.
    """

    upper_y: float
    lower_y: float
    upper_censored: bool = False
    lower_censored: bool = False

    @property
    def gap_px(self) -> float:
        return max(self.lower_y - self.upper_y, 0.0)

    @property
    def measured(self) -> bool:
        return not (self.upper_censored or self.lower_censored or math.isnan(self.upper_y) or math.isnan(self.lower_y))


def _lower_measured(edges: LidEdges) -> bool:
    """Whether the lower lid was measured (whatever the upper one)."""
    return not (edges.lower_censored or math.isnan(edges.lower_y))


def _clamp(value: float, low: float, high: float) -> float:
    """`value` limited to [low, high] (numpy's clip is slow on scalars, and this runs per frame)."""
    return min(max(float(value), low), high)


def _crossing(profile: npt.NDArray[np.float32], inside: int, outside: int, threshold: float) -> float:
    """Sub-row position where the profile crosses `threshold` between adjacent rows inside and outside."""
    a, b = float(profile[outside]), float(profile[inside])
    return inside + (outside - inside) * (threshold - b) / max(a - b, 1e-6)


def _band_profile(band: GrayU8, axis: int, glint_px: int) -> npt.NDArray[np.float32]:
    """Mean across the band, glints removed by a grey opening along it, lightly smoothed."""
    # As one row: OpenCV's row filters cost a third of its column filters on a profile this short.
    profile = cv2.reduce(band, axis, cv2.REDUCE_AVG, dtype=cv2.CV_32F).reshape(1, -1)
    profile = cv2.morphologyEx(profile, cv2.MORPH_OPEN, np.ones((1, glint_px), np.uint8))
    smooth: npt.NDArray[np.float32] = np.asarray(cv2.GaussianBlur(profile, (5, 1), 0)[0], np.float32)
    return smooth


def _dark_run(profile: npt.NDArray[np.float32], start: int, threshold: float) -> tuple[int, int]:
    """First and last index of the run of values below `threshold` containing `start` (itself below it)."""
    # Found with two searches over the profile rather than a Python loop over the run's samples.
    ends = np.flatnonzero(profile >= threshold)
    after = int(np.searchsorted(ends, start, side="right"))
    top = int(ends[after - 1]) + 1 if after > 0 else 0
    bottom = int(ends[after]) - 1 if after < len(ends) else len(profile) - 1
    return top, bottom


def _run_ends(profile: npt.NDArray[np.float32], start: int, threshold: float) -> tuple[float, float]:
    top, bottom = _dark_run(profile, start, threshold)
    first = _crossing(profile, top, top - 1, threshold) if top > 0 else top - 0.5
    last = _crossing(profile, bottom, bottom + 1, threshold) if bottom < len(profile) - 1 else bottom + 0.5
    return first, last


def _iris_bright_split(profile: npt.NDArray[np.float32], centre: float, radius_px: float) -> float | None:
    """Otsu's split of the profile around the pupil, the pupil itself left out: iris and lid lines below it,
    sclera and skin above (with the pupil in, the split would fall between pupil and iris)."""
    reach = int(max(7.0 * radius_px, 14.0))
    index = np.arange(max(int(centre) - reach, 0), min(int(centre) + reach + 1, len(profile)))
    index = index[np.abs(index - centre) > radius_px + 1.0]
    if index.size < 8:
        return None
    section = np.minimum(np.maximum(profile[index], 0), 255).astype(np.uint8).reshape(-1, 1)
    threshold, _ = cv2.threshold(section, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    return float(threshold)


def measure_lids(
    gray: GrayU8, x: float, y: float, radius_px: float, iris_half_height_px: float | None = None
) -> LidEdges | None:
    """The lid edges along a band of half-width ~`radius_px` through (x, y); None when no dark run is there.

    With the iris' half-height known, a run end at the iris' rim is followed across the sclera to the next
    dark line (the upper lid's margin and lashes); when none is found the edge is reported censored.
    """
    height, width = gray.shape
    half = max(int(radius_px), 2)
    x0, x1 = max(int(x) - half, 0), min(int(x) + half + 1, width)
    if x1 <= x0:
        return None
    glint_px = max(int(radius_px * 0.6) | 1, 5)
    smooth = _band_profile(gray[:, x0:x1], 1, glint_px)
    # The dark/bright split of the eye's neighbourhood: lids and skin above and below, the eye between.
    threshold = _iris_bright_split(smooth, y, radius_px)
    if threshold is None:
        return None
    row = min(max(round(y), 0), height - 1)
    near_lo, near_hi = max(row - half, 0), min(row + half + 1, height)
    row = near_lo + int(np.argmin(smooth[near_lo:near_hi]))
    if smooth[row] >= threshold:
        return None
    upper, lower = _run_ends(smooth, row, threshold)
    # A lid is never much farther from the pupil than the iris' rim: a longer run is shadow or vignetting.
    farthest = MAX_LID_TO_IRIS * iris_half_height_px if iris_half_height_px else MAX_LID_TO_PUPIL * radius_px
    if upper < y - farthest:
        upper = float("nan")
    if lower > y + farthest:
        lower = float("nan")
    if iris_half_height_px is None:
        return LidEdges(upper, lower)
    if math.isnan(upper) or math.isnan(lower):
        return LidEdges(upper, lower)
    tolerance = max(IRIS_RIM_TOLERANCE_PX, IRIS_RIM_TOLERANCE * iris_half_height_px)
    # A run ending well past the iris' upper rim went on through a lid raised above the iris (its margin and
    # the shadow under it): that lid is measured. One ending at the rim may be the rim or a lid sitting on it.
    upper_censored = abs(upper - (y - iris_half_height_px)) <= tolerance
    lower_censored = lower >= y + iris_half_height_px - tolerance
    search = int(iris_half_height_px * SCLERA_SEARCH)
    if upper_censored:
        start = math.floor(upper) - 1
        for r in range(start, max(start - search, 0), -1):
            if smooth[r] < threshold:
                upper, upper_censored = _crossing(smooth, r, r + 1, threshold), False
                break
    if lower_censored:
        start = int(np.ceil(lower)) + 1
        for r in range(start, min(start + search, height - 1)):
            if smooth[r] < threshold:
                lower, lower_censored = _crossing(smooth, r, r - 1, threshold), False
                break
    if lower_censored:
        margin = _lower_margin_ridge(gray, x, lower, search)
        if margin is not None:
            lower, lower_censored = margin, False
    else:
        lower = _past_paler_band(smooth, lower, search)
    return LidEdges(upper, lower, upper_censored, lower_censored)


def _past_paler_band(profile: npt.NDArray[np.float32], end_y: float, reach_px: int) -> float:
    """The lower lid, when the dark run ended on a paler band short of it: in a low-contrast image the iris' outer
    part can be brighter than the profile's split, and the lid shows as a second climb, to the skin's level, from
    a flat band. `end_y` itself otherwise."""
    first = math.ceil(end_y) + PALER_BAND_FROM_PX
    last = min(first + reach_px, len(profile) - 1)
    if last - first < PALER_BAND_ROWS + 2:
        return end_y
    band = profile[first : first + PALER_BAND_ROWS]
    band_level = float(band.mean())
    skin = float(profile[first + PALER_BAND_ROWS : last].max())
    if skin - band_level < PALER_BAND_MIN_STEP or float(band.max() - band.min()) > PALER_BAND_FLATNESS * (
        skin - band_level
    ):
        return end_y
    level = (band_level + skin) / 2.0
    for r in range(first + PALER_BAND_ROWS, last):
        if profile[r] >= level:
            return _crossing(profile, r - 1, r, level)
    return end_y


def _lower_margin_ridge(gray: GrayU8, x: float, rim_y: float, search_px: int) -> float | None:
    """The lower lid over the sclera, from its wet margin: a thin bright line just below the white of the eye.

    The skin of the lower lid is often about as bright as the sclera, so no dark run ends there; the margin
    still shows as a line brighter than the rows two above and below it. Looked for in a narrow band (the lid
    slopes across a wide one), from just below the iris' rim; None unless the line stands out.
    """
    height, width = gray.shape
    x0, x1 = max(int(x) - LOWER_RIDGE_HALF_WIDTH_PX, 0), min(int(x) + LOWER_RIDGE_HALF_WIDTH_PX + 1, width)
    first, last = int(rim_y) + LOWER_RIDGE_FROM_RIM_PX, min(int(rim_y) + search_px, height - 3)
    if x1 <= x0 or last - first < 3 or first < 2:
        return None
    profile = cv2.reduce(gray[first - 2 : last + 3, x0:x1], 1, cv2.REDUCE_AVG, dtype=cv2.CV_32F)[:, 0]
    ridge = np.asarray(profile[2:-2] - np.maximum(profile[:-4], profile[4:]), np.float32)
    best = int(np.argmax(ridge))
    peak = float(ridge[best])
    spread = float(_median(np.abs(ridge - _median(ridge))))
    if peak < max(LOWER_RIDGE_MIN_LEVELS, LOWER_RIDGE_MIN_TO_SPREAD * spread):
        return None
    offset = 0.0
    if 0 < best < len(ridge) - 1:
        a, b, c = float(ridge[best - 1]), peak, float(ridge[best + 1])
        offset = _clamp(0.5 * (a - c) / max(a - 2.0 * b + c, -1e6) if a - 2.0 * b + c < 0 else 0.0, -0.5, 0.5)
    return first + best + offset - LOWER_RIDGE_TO_EDGE_PX


def measure_iris_half_width(gray: GrayU8, x: float, y: float, radius_px: float) -> float | None:
    """The iris' half-width along the pupil's row (its sides are not covered by the lids)."""
    height, width = gray.shape
    half = max(int(radius_px * 0.5), 1)
    y0, y1 = max(int(y) - half, 0), min(int(y) + half + 1, height)
    if y1 <= y0:
        return None
    glint_px = max(int(radius_px * 0.6) | 1, 5)
    smooth = _band_profile(gray[y0:y1, :], 0, glint_px)
    threshold = _iris_bright_split(smooth, x, radius_px)
    if threshold is None:
        return None
    column = min(max(round(x), 0), width - 1)
    if smooth[column] >= threshold:
        return None
    left, right = _run_ends(smooth, column, threshold)
    # Towards an eye corner the dark run may go on into the canthus: the nearer rim is the iris'.
    return min(x - left, right - x)


def _fit_with_prior(
    features: npt.NDArray[np.float64], values: npt.NDArray[np.float64], index: int, prior: float
) -> npt.NDArray[np.float64]:
    """Least squares with coefficient `index` pulled towards `prior` (weight BASELINE_PRIOR_WEIGHT).

    Solved by the normal equations (a few well-scaled features: as exact as lstsq here, and several times faster).
    """
    gram = features.T @ features
    rhs = features.T @ values
    gram[index, index] += BASELINE_PRIOR_WEIGHT
    rhs[index] += BASELINE_PRIOR_WEIGHT * prior
    return _solve_normal(gram, rhs)


def _least_squares(features: npt.NDArray[np.float64], values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Plain least squares, by the normal equations as `_fit_with_prior` (lstsq's SVD cost a baseline refit a
    third of its time)."""
    return _solve_normal(features.T @ features, features.T @ values)


def _solve_normal(gram: npt.NDArray[np.float64], rhs: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    try:
        return np.asarray(np.linalg.solve(gram, rhs), np.float64)
    except np.linalg.LinAlgError:
        coef, *_ = np.linalg.lstsq(gram, rhs, rcond=None)
        return np.asarray(coef, np.float64)


def _median(values: npt.NDArray[np.float32] | npt.NDArray[np.float64]) -> float:
    """`np.median(values)` of a 1-D float array, the same value (the two middle values' mean, in the array's
    precision, when their count is even) by one partial sort, without np.median's overhead (5x the sort here).
    A float32 value is exact as a Python float, so arithmetic with float32 arrays stays the same."""
    size = len(values)
    middle = size // 2
    if size % 2:
        return float(np.partition(values, middle)[middle])
    ordered = np.partition(values, (middle - 1, middle))
    return float((ordered[middle - 1] + ordered[middle]) / 2)


def _percentiles(values: npt.NDArray[np.float64], percents: tuple[float, ...]) -> list[float]:
    """`np.percentile(values, percents)` (its default linear interpolation), by one partial sort: numpy's
    version costs several times more in overhead on these few hundred values, and this runs every few frames."""
    last = len(values) - 1
    positions = [p / 100.0 * last for p in percents]
    below = [math.floor(x) for x in positions]
    above = [min(b + 1, last) for b in below]
    ordered = np.partition(values, sorted(set(below + above)))
    return [
        float(ordered[b] + (ordered[a] - ordered[b]) * (x - b)) for x, b, a in zip(positions, below, above, strict=True)
    ]


class _RunningMedian:
    def __init__(self, size: int = HISTORY_FRAMES) -> None:
        self.values: deque[float] = deque(maxlen=size)
        self._count = 0
        self.median: float | None = None
        self.high: float | None = None
        self.low: float | None = None

    def add(self, value: float) -> None:
        self.values.append(value)
        self._count += 1
        if self._count % REFRESH_EVERY == 0 or len(self.values) == MIN_BASELINE_SAMPLES:
            array = np.fromiter(self.values, np.float64)
            self.low, self.median, self.high = _percentiles(array, (5.0, 50.0, 97.0))

    @property
    def ready(self) -> bool:
        return len(self.values) >= MIN_BASELINE_SAMPLES and self.median is not None


class _SampleRing:
    """The last `size` samples of `columns` floats each, kept in one preallocated array: a fit reads them without
    a Python-level conversion of hundreds of tuples (a deque's cost). Once it wraps the rows are not in time
    order, which no fit depends on."""

    def __init__(self, size: int, columns: int) -> None:
        self._rows = np.empty((size, columns), np.float64)
        self._next = 0
        self._filled = 0

    def append(self, row: tuple[float, ...]) -> None:
        self._rows[self._next] = row
        self._next = (self._next + 1) % len(self._rows)
        self._filled = min(self._filled + 1, len(self._rows))

    def __len__(self) -> int:
        return self._filled

    def array(self) -> npt.NDArray[np.float64]:
        """The samples, one per row (a view: not to be written)."""
        return self._rows[: self._filled]


class _DeferredRefit:
    """A fit over a sample history whose `add` only marks a refit due: `upkeep` runs it, between frames."""

    _refit_due = False

    def _fit(self) -> None:
        raise NotImplementedError

    def upkeep(self) -> None:
        """The refit the samples made due, if any."""
        if self._refit_due:
            self._refit_due = False
            self._fit()


class LidBaseline(_DeferredRefit):
    """The relaxed lids as a function of the pupil position, learnt from the frames where the pupil is seen.

    The gap narrows towards the eye corners (a + c u^2, u = horizontal offset); the lower lid follows vertical
    gaze only partly, so its offset from the pupil changes linearly with the pupil's height (a + b v + c u^2).
    Only samples near the fit's open cluster are kept, so squints, blinks and widened eyes are left out.
    """

    def __init__(self, size: int = HISTORY_FRAMES) -> None:
        # x, y, gap, lower lid offset, relaxed (1.0) or not, widened (1.0) or not
        self._samples = _SampleRing(size, 6)
        self._count = 0
        self._gap_coef: npt.NDArray[np.float64] | None = None
        self._lower_coef: npt.NDArray[np.float64] | None = None
        self._centre = (0.0, 0.0)
        self._scale = 1.0
        self._gap_range = (0.0, 0.0)
        self._lower_range = (0.0, 0.0)
        self._seen_x: list[float] = [0.0, 0.0]
        self._seen_y: list[float] = [0.0, 0.0]
        # Cell -> (gap residual, lower residual, weight) against the smooth fit.
        self._local: dict[tuple[int, int], tuple[float, float, float]] = {}

    @property
    def ready(self) -> bool:
        return self._gap_coef is not None

    def _cell(self, x: float, y: float) -> tuple[int, int]:
        step = LOCAL_CELL * self._scale
        return math.floor((x - self._centre[0]) / step), math.floor((y - self._centre[1]) / step)

    def add(self, x: float, y: float, edges: LidEdges, relaxed: bool = True, widened: bool = False) -> None:
        """A sample of the lids at this pupil position; `relaxed`: the lids last read neither squinted, widened
        nor closed (only those correct the fit locally, so a long squint where no relaxed lids were seen is not
        learnt as relaxed); `widened`: they last read widened (left out of the fit). A refit it makes due runs at
        the next `upkeep`."""
        self._samples.append((x, y, edges.gap_px, edges.lower_y - y, 1.0 if relaxed else 0.0, 1.0 if widened else 0.0))
        self._count += 1
        if len(self._samples) >= MIN_BASELINE_SAMPLES and (self._count % REFRESH_EVERY == 0 or self._gap_coef is None):
            self._refit_due = True

    def _features(
        self, xs: npt.NDArray[np.float64], ys: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        u = (xs - self._centre[0]) / self._scale
        v = (ys - self._centre[1]) / self._scale
        ones = np.ones_like(u)
        if self._count < MIN_FIT_SAMPLES:
            return ones[:, None], ones[:, None]
        # The lids' corner line is tilted: both lids shift with the column (the gap does not).
        return np.column_stack([ones, u * u]), np.column_stack([ones, u, v, u * u])

    def _fit(self) -> None:
        data = self._samples.array()
        xs, ys, gaps, lowers, relaxed = data[:, 0], data[:, 1], data[:, 2], data[:, 3], data[:, 4] > 0.5
        self._centre = (_median(xs), _median(ys))
        self._scale = max(_median(gaps), 1.0)
        gap_features, lower_features = self._features(xs, ys)
        # Lashes and shadow only ever shorten a measured gap: the fit starts from the upper part of the samples.
        usable = data[:, 5] < 0.5
        if np.count_nonzero(usable) < len(gaps) * MIN_UNWIDENED_SHARE:
            usable = np.ones(len(gaps), bool)
        keep = usable & (gaps >= _percentiles(gaps[usable], (BASELINE_START_PERCENTILE,))[0])
        for _ in range(BASELINE_FIT_ROUNDS):
            if np.count_nonzero(keep) < lower_features.shape[1] * 4:
                return
            coef = _least_squares(gap_features[keep], gaps[keep])
            predicted = gap_features @ coef
            residual = (gaps - predicted) / np.maximum(predicted, 1.0)
            keep = usable & (residual > BASELINE_KEEP[0]) & (residual < BASELINE_KEEP[1])
        if np.count_nonzero(keep) < lower_features.shape[1] * 4:
            return
        self._gap_coef = _least_squares(gap_features[keep], gaps[keep])
        # The lids follow vertical gaze part of the way: the lower lid's offset from the pupil shrinks as the
        # pupil goes down. That prior lets the fit reach gaze it has not seen yet; the samples soon outweigh it.
        if lower_features.shape[1] == LOWER_FEATURES:
            slope_prior = (LID_GAZE_FOLLOW_PRIOR - 1.0) * self._scale
            self._lower_coef = _fit_with_prior(lower_features[keep], lowers[keep], VERTICAL_FEATURE, slope_prior)
        else:
            self._lower_coef = _least_squares(lower_features[keep], lowers[keep])
        # Predictions stay near the range seen: a fit must not extrapolate far from the samples.
        gap_low, gap_high = _percentiles(gaps[keep], (2.0, 98.0))
        self._seen_x = _percentiles(xs[keep], (2.0, 98.0))
        self._seen_y = _percentiles(ys[keep], (2.0, 98.0))
        lower_low, lower_high = _percentiles(lowers[keep], (2.0, 98.0))
        self._gap_range, self._lower_range = (gap_low, gap_high), (lower_low, lower_high)
        gap_residuals, lower_residuals = (
            gaps - gap_features @ self._gap_coef,
            lowers - lower_features @ self._lower_coef,
        )
        self._fit_local(xs[relaxed], ys[relaxed], gap_residuals[relaxed], lower_residuals[relaxed])

    def _fit_local(
        self,
        xs: npt.NDArray[np.float64],
        ys: npt.NDArray[np.float64],
        gap_residuals: npt.NDArray[np.float64],
        lower_residuals: npt.NDArray[np.float64],
    ) -> None:
        """Per cell of pupil positions: the residuals of its relaxed samples against the smooth fit (the gap's
        LOCAL_GAP_PERCENTILE, the lower lid's median near that gap) and how far to trust them; all cells at once."""
        step = LOCAL_CELL * self._scale
        columns = np.floor((xs - self._centre[0]) / step).astype(np.int64)
        rows = np.floor((ys - self._centre[1]) / step).astype(np.int64)
        cells = columns * 65536 + rows
        order = np.lexsort((gap_residuals, cells))
        cells, columns, rows = cells[order], columns[order], rows[order]
        gaps, lowers = gap_residuals[order], lower_residuals[order]
        if len(cells) == 0:
            self._local = {}
            return
        starts = np.flatnonzero(np.r_[True, cells[1:] != cells[:-1]])
        counts = np.diff(np.r_[starts, len(cells)])
        # The percentile of each cell's sorted gaps, interpolated as numpy's default does.
        position = starts + LOCAL_GAP_PERCENTILE / 100.0 * (counts - 1)
        below = np.floor(position).astype(np.int64)
        above = np.minimum(below + 1, starts + counts - 1)
        cell_gap = gaps[below] + (gaps[above] - gaps[below]) * (position - below)
        # The lower lid's median over the samples of the open cluster (near the cell's gap).
        group = np.repeat(np.arange(len(starts)), counts)
        band_low, band_high = BASELINE_KEEP[0] * self._scale, BASELINE_KEEP[1] * self._scale
        near = (gaps > cell_gap[group] + band_low) & (gaps < cell_gap[group] + band_high)
        near_group, near_lowers = group[near], lowers[near]
        near_order = np.lexsort((near_lowers, near_group))
        near_lowers = near_lowers[near_order]
        near_counts = np.bincount(near_group, minlength=len(starts))
        near_starts = np.cumsum(near_counts) - near_counts
        has = near_counts > 0
        cell_lower = np.zeros(len(starts))
        middle_low = near_starts[has] + (near_counts[has] - 1) // 2
        middle_high = near_starts[has] + near_counts[has] // 2
        cell_lower[has] = (near_lowers[middle_low] + near_lowers[middle_high]) / 2.0
        weight = np.minimum(counts / LOCAL_FULL_SAMPLES, 1.0)
        kept = np.flatnonzero(counts >= LOCAL_MIN_SAMPLES)
        self._local = {
            (int(columns[starts[i]]), int(rows[starts[i]])): (
                float(cell_gap[i]),
                float(cell_lower[i]),
                float(weight[i]),
            )
            for i in kept
        }

    @property
    def samples(self) -> int:
        """Samples taken so far."""
        return self._count

    def covers(self, x: float, y: float) -> bool:
        """Whether the fit has seen pupils about here (within WIDEN_REACH relaxed gaps of the positions it kept):
        farther out it extrapolates."""
        reach = WIDEN_REACH * self._scale
        return (self._seen_x[0] - reach <= x <= self._seen_x[1] + reach) and (
            self._seen_y[0] - reach <= y <= self._seen_y[1] + reach
        )

    def predict(self, x: float, y: float) -> tuple[float, float] | None:
        """(relaxed gap, relaxed lower-lid offset from the pupil) at this pupil position, pixels."""
        if self._gap_coef is None or self._lower_coef is None:
            return None
        # The features of `_features` for one point, in plain floats (this runs every frame).
        g, w = self._gap_coef, self._lower_coef
        if len(g) == 1:
            return _clamp(float(g[0]), *self._gap_range), _clamp(float(w[0]), *self._lower_range)
        u, v = (x - self._centre[0]) / self._scale, (y - self._centre[1]) / self._scale
        gap = float(g[0] + g[1] * u * u)
        lower = float(w[0] + w[1] * u + w[2] * v + w[3] * u * u)
        local = self._local.get(self._cell(x, y))
        if local is None:
            return _clamp(gap, *self._gap_range), _clamp(lower, *self._lower_range)
        gap_res, lower_res, weight = local
        # Where samples were seen the fit plus their residual is data, not an extrapolation: no clamp needed.
        local_gap, local_lower = gap + gap_res, lower + lower_res
        far_gap, far_lower = _clamp(gap, *self._gap_range), _clamp(lower, *self._lower_range)
        return far_gap + weight * (local_gap - far_gap), far_lower + weight * (local_lower - far_lower)


class LowerLidBaseline(_DeferredRefit):
    """The relaxed lower lid's offset from the pupil as a function of the pupil position, from every frame where
    the lower lid is measured, whatever the upper lid does (it is the steadier edge: lashes hide the upper one).

    a + b u + c v + d u^2 as in `LidBaseline`, with the same prior on the vertical slope; squints and blinks
    raise the lower lid, so the fit keeps the upper envelope of the samples (residuals within a band scaled by
    their own spread). The fit reaches a little past the pupil positions seen (the slope is physical), no further.
    """

    def __init__(self, size: int = HISTORY_FRAMES) -> None:
        self._samples = _SampleRing(size, 3)  # x, y, lower lid offset
        self._count = 0
        self._coef: npt.NDArray[np.float64] | None = None
        self._centre = (0.0, 0.0)
        self._scale = 1.0
        self._u_range = (0.0, 0.0)
        self._v_range = (0.0, 0.0)
        # The relaxed samples' scatter around the fit (a robust standard deviation, pixels).
        self.spread_px = 0.0

    @property
    def ready(self) -> bool:
        return self._coef is not None and len(self._coef) == LOWER_FEATURES

    def add(self, x: float, y: float, lower_offset_px: float) -> None:
        """A sample of the lower lid at this pupil position; a refit it makes due runs at the next `upkeep`."""
        self._samples.append((x, y, lower_offset_px))
        self._count += 1
        if len(self._samples) >= MIN_FIT_SAMPLES and self._count % LOWER_REFRESH_EVERY == 0:
            self._refit_due = True

    def _features(self, u: npt.NDArray[np.float64], v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.column_stack([np.ones_like(u), u, v, u * u])

    def _fit(self) -> None:
        data = self._samples.array()
        xs, ys, lowers = data[:, 0], data[:, 1], data[:, 2]
        self._centre = (_median(xs), _median(ys))
        self._scale = max(_median(np.abs(lowers)), 1.0)
        u, v = (xs - self._centre[0]) / self._scale, (ys - self._centre[1]) / self._scale
        features = self._features(u, v)
        slope_prior = (LID_GAZE_FOLLOW_PRIOR - 1.0) * self._scale
        keep = np.ones(len(lowers), bool)
        for start in range(BASELINE_FIT_ROUNDS + 1):
            coef = _fit_with_prior(features[keep], lowers[keep], VERTICAL_FEATURE, slope_prior)
            residual = lowers - features @ coef
            if start == 0:
                rank = int(len(residual) * (100 - BASELINE_START_PERCENTILE) / 100)
                keep = residual >= np.partition(residual, rank)[rank]
                continue
            spread = max(1.4826 * _median(np.abs(residual[keep])), 0.5)
            keep = (residual > -LOWER_KEEP_SPREADS[0] * spread) & (residual < LOWER_KEEP_SPREADS[1] * spread)
            if np.count_nonzero(keep) < LOWER_FEATURES * 4:
                return
        self._coef = coef
        self.spread_px = spread
        self._u_range = _widened_range(u[keep], LOWER_EXTRAPOLATION)
        self._v_range = _widened_range(v[keep], LOWER_EXTRAPOLATION)

    def offset_from_middle(self, x: float) -> float:
        """How far this pupil column is from the middle of those seen, pixels."""
        return x - self._centre[0]

    def predict(self, x: float, y: float) -> float | None:
        """The relaxed lower lid's offset below the pupil at this pupil position, pixels."""
        if self._coef is None:
            return None
        u = _clamp((x - self._centre[0]) / self._scale, *self._u_range)
        v = _clamp((y - self._centre[1]) / self._scale, *self._v_range)
        return float(self._coef[0] + self._coef[1] * u + self._coef[2] * v + self._coef[3] * u * u)


def _widened_range(values: npt.NDArray[np.float64], extra: float) -> tuple[float, float]:
    """The span of `values` widened by `extra` of itself on each side."""
    low, high = float(np.min(values)), float(np.max(values))
    return low - extra * (high - low), high + extra * (high - low)


def pupil_dark_fraction(gray: GrayU8, pupil: PupilResult) -> float:
    """Share of the pupil's fitted ellipse (its inner part) that is actually dark, i.e. not covered by a lid.

    Dark is below the midpoint between the ellipse's darkest pixels and its surroundings (iris, or skin
    where a lid is). A pupil hidden under a lid, or a shape fitted to the lash line of a closed eye, leaves
    much of the ellipse bright. Sampled on a grid of about DARK_SAMPLES_PER_RADIUS points per radius.
    """
    height, width = gray.shape
    half_w, half_h = pupil.ellipse_w / 2.0, pupil.ellipse_h / 2.0
    if half_w < 1.0 or half_h < 1.0:
        return 0.0
    reach = max(half_w, half_h) * DARK_RING_SCALE[1]
    step = max(int(min(half_w, half_h) / DARK_SAMPLES_PER_RADIUS), 1)
    x0, x1 = max(int(pupil.x - reach), 0), min(int(pupil.x + reach) + 2, width)
    y0, y1 = max(int(pupil.y - reach), 0), min(int(pupil.y + reach) + 2, height)
    roi = gray[y0:y1:step, x0:x1:step]
    if roi.shape[0] < 3 or roi.shape[1] < 3:
        return 0.0
    dy = (np.arange(y0, y1, step, dtype=np.float32) - np.float32(pupil.y))[:, None]
    dx = (np.arange(x0, x1, step, dtype=np.float32) - np.float32(pupil.x))[None, :]
    cos_a, sin_a = cos_sin_deg(pupil.angle_deg)
    # Squared radius in units of the ellipse: 1 on its outline.
    radius2 = ((dx * cos_a + dy * sin_a) / half_w) ** 2 + ((dy * cos_a - dx * sin_a) / half_h) ** 2
    inside = roi[radius2 < DARK_INNER_SCALE**2]
    around = roi[(radius2 > DARK_RING_SCALE[0] ** 2) & (radius2 < DARK_RING_SCALE[1] ** 2)]
    if inside.size < 4 or around.size < 4:
        return 0.0
    core = float(np.partition(inside, inside.size // 10)[inside.size // 10])
    threshold = (core + float(np.partition(around, around.size // 2)[around.size // 2])) / 2.0
    return float(np.count_nonzero(inside < threshold)) / inside.size


def _aspect(pupil: PupilResult) -> float:
    return min(pupil.ellipse_w, pupil.ellipse_h) / max(pupil.ellipse_w, pupil.ellipse_h, 1e-3)


def _height_to_width(pupil: PupilResult) -> float:
    extent_x, extent_y = _extents(pupil)
    return extent_y / max(extent_x, 1e-3)


def _extents(pupil: PupilResult) -> tuple[float, float]:
    """Horizontal and vertical half-extents of the pupil's ellipse."""
    half_w, half_h = pupil.ellipse_w / 2.0, pupil.ellipse_h / 2.0
    cos_a, sin_a = cos_sin_deg(pupil.angle_deg)
    return math.hypot(half_w * cos_a, half_h * sin_a), math.hypot(half_w * sin_a, half_h * cos_a)


class LidEstimator:
    """Per-eye lid and pupil-size state; `update` takes every frame and the pupil found in it."""

    def __init__(self, confident: float = 0.5) -> None:
        self.confident = confident
        self._baseline = LidBaseline()
        self._pupil_size = _RunningMedian()
        self._recent_size = _RunningMedian(RECENT_SIZE_FRAMES)
        self._iris_radius = _RunningMedian()
        self._pupil_height_ratio = _RunningMedian()
        self._dark_fraction = _RunningMedian()
        self._confidence = _RunningMedian()
        self._seen_count = 0
        self._blink_frames = 0
        self._last_x: float | None = None
        self._last_y: float | None = None
        self._last_radius = 0.0
        self._blink = False
        self._relaxed_reading = True
        self._widened_reading = False
        self._lower_baseline = LowerLidBaseline()
        self._pupil_height = _RunningMedian()
        # (pupil height, whether the upper lid was lost) of recent plainly seen frames, and the trust it gives.
        self._upper_lost: deque[tuple[float, bool]] = deque(maxlen=UPPER_LOST_FRAMES)
        self._upper_noted = 0
        self._upper_trust = 1.0
        # The last frame's image measurements, which a still frame takes again.
        self._last_dark = 0.0
        self._last_edges: LidEdges | None = None
        self._last_iris: float | None = None

    @property
    def settled(self) -> bool:
        """Whether the relaxed lids have been learnt from SETTLED_SAMPLES frames (about 5 s of a plainly seen pupil at
        90 fps): before, each sample still moves the fit noticeably."""
        return self._baseline.samples >= SETTLED_SAMPLES and self._pupil_size.ready

    def update(self, gray: GrayU8, pupil: PupilResult, still: bool = False) -> LidState:
        """`still`: the frame shows what the last one showed (app.tracking.still) and `pupil` is the last one's: its
        image measurements are taken again rather than re-measured, and the statistics go on learning as if they
        had been (a fixation counts as long as it lasts)."""
        height, width = gray.shape
        if pupil.confidence >= self.confident:
            self._confidence.add(pupil.confidence)
        if still:
            dark = self._last_dark
        else:
            dark = self._last_dark = pupil_dark_fraction(gray, pupil) if pupil.confidence >= self.confident else 0.0
        if pupil.confidence >= USUAL_SAMPLE_CONFIDENCE:
            self._pupil_height_ratio.add(_height_to_width(pupil))
            self._dark_fraction.add(dark)
        visibility, presence = self._visibility(pupil, dark)
        if self._blink and (self._jumped(pupil) or (self._shrunk(pupil) and self._moved_radii(pupil) > 1.0)):
            presence = min(presence, 0.0)
            visibility = min(visibility, 0.0) if visibility < BLINK_VISIBLE_OFF else visibility
        self._blink_frames = self._blink_frames + 1 if self._blink else 0
        seen = visibility >= 0.5
        if seen:
            self._last_x, self._last_y = pupil.x, pupil.y
            self._last_radius = max(pupil.ellipse_w, pupil.ellipse_h) / 2.0
        x = self._last_x if self._last_x is not None else width / 2.0
        y = self._last_y if self._last_y is not None else height / 2.0
        radius = self._last_radius or min(height, width) * 0.06
        if seen:
            self._pupil_size.add(max(pupil.ellipse_w, pupil.ellipse_h))
            self._recent_size.add(max(pupil.ellipse_w, pupil.ellipse_h))
            self._seen_count += 1
            # The iris' size does not change: once known, a sample now and then keeps it current.
            due = not self._iris_radius.ready or self._seen_count % IRIS_SAMPLE_EVERY == 0
            iris = None
            if due:
                iris = self._last_iris if still else measure_iris_half_width(gray, pupil.x, pupil.y, radius)
                self._last_iris = iris
            extent_x, _ = _extents(pupil)
            if iris is not None and iris >= MIN_IRIS_TO_PUPIL * extent_x:
                # The iris' radius: its half-width undone of the foreshortening the pupil shows.
                self._iris_radius.add(iris * radius / max(extent_x, 1e-3))
        iris_half_height = self._iris_half_height(pupil if seen else None)
        if still:
            edges = self._last_edges
        else:
            edges = self._last_edges = measure_lids(gray, x, y, radius, iris_half_height)
        if seen and edges is not None and edges.measured and edges.upper_y < pupil.y < edges.lower_y:
            self._baseline.add(x, y, edges, self._relaxed_reading, self._widened_reading)
        if seen:
            self._pupil_height.add(pupil.y)
        if seen and edges is not None:
            # A lid lowered over the pupil may end the run anywhere: only plainly seen pupils count.
            if visibility >= UPPER_LOST_VISIBILITY:
                self._note_upper_lid(pupil.y, math.isnan(edges.upper_y))
            if _lower_measured(edges) and pupil.y < edges.lower_y:
                self._lower_baseline.add(x, y, edges.lower_y - y)
        openness, widen, squeeze = self._lid_values(edges, x, y, presence)
        self._relaxed_reading = max(widen, squeeze, 1.0 - openness) < RELAXED_READING
        self._widened_reading = widen >= WIDENED_SAMPLE
        if self._baseline.samples < WIDEN_MIN_SAMPLES or not self._baseline.covers(x, y):
            widen = 0.0
        # What the lids say, kept for the blink's start whatever is reported (see below).
        lid_openness = openness
        trust_upper = self._upper_trust if self._lower_baseline.ready else 1.0
        if trust_upper < 1.0 and edges is not None and not math.isnan(edges.upper_y):
            # The upper lid is mostly lost in the lashes: where found it is as likely the lash line. The pupil
            # tells openness then (open, capped by how much of it shows).
            lower_squeeze = self._lower_squeeze(edges, x, y, presence, iris_half_height)
            # (During a blink the lids' reading stays in charge: a shape on the closed lids may look like a pupil.)
            blended = trust_upper * openness + (1.0 - trust_upper)
            openness = min(openness, blended) if self._blink else blended
            widen *= trust_upper
            squeeze = trust_upper * squeeze + (1.0 - trust_upper) * lower_squeeze
        elif trust_upper < 1.0 and edges is not None:
            # The upper lid lost here as usual: the lower lid alone tells the squint.
            squeeze = self._lower_squeeze(edges, x, y, presence, iris_half_height)
        # During a blink only a plainly seen pupil lifts the cap: a shape found on the closed lids now and
        # then must not make the closed eye flicker open.
        shown = min(presence, visibility) if self._blink else presence
        cap = NO_PUPIL_OPENNESS_CAP + (1.0 - NO_PUPIL_OPENNESS_CAP) * shown
        openness, lid_openness = min(openness, cap), min(lid_openness, cap)
        if not (seen and self._baseline.ready):
            # Widen and squeeze are relative to the user's relaxed eye: nothing is reported until it is measured.
            # A squint may hide part of the pupil (under either lid): a pupil still present keeps it.
            widen = 0.0
            if not (presence >= SQUEEZE_MIN_PRESENCE and self._baseline.ready):
                squeeze = 0.0
        # A confidently seen, unflattened pupil of the usual size is never a blink, whatever the lids read.
        if visibility >= VISIBLE_FLOOR_FROM:
            floor = VISIBLE_OPENNESS_FLOOR * (visibility - VISIBLE_FLOOR_FROM) / (1.0 - VISIBLE_FLOOR_FROM)
            openness, lid_openness = max(openness, floor), max(lid_openness, floor)
        if self._blink and ((openness > BLINK_OFF and presence >= BLINK_VISIBLE_ON) or visibility >= BLINK_VISIBLE_OFF):
            self._blink = False
        elif not self._blink and min(openness, lid_openness) < BLINK_ON and presence < BLINK_VISIBLE_ON:
            # Closing lids with the pupil going: a blink, also where openness is read from the pupil (the
            # lower-lid reading), which trails the closing lids.
            self._blink = True
        # Both readings of a squint rest on the lower lid's rise: a lid measured no steadier than a good part of
        # that rise cannot tell one.
        squeeze *= self._lower_steadiness(iris_half_height)
        aperture = edges.gap_px if edges is not None and edges.measured else 0.0
        return LidState(openness, self._blink, self._dilation(pupil, seen), widen, squeeze, aperture, visibility)

    def upkeep(self) -> None:
        """The relaxed lids' refits made due by the last frame (about 1 ms, on one frame in 15): run between frames,
        off the frame's path, where the caller can (the tracker process: after the result has gone out)."""
        self._baseline.upkeep()
        self._lower_baseline.upkeep()

    def _note_upper_lid(self, y: float, lost: bool) -> None:
        """Keeps whether the upper lid was lost, with the pupil's height, and now and then the trust that follows.

        Looking down the upper lid is far above the pupil and often out of reach for any eye, so the share lost
        is taken over the frames with the pupil in the upper half of the heights it was seen at (once they span
        UPPER_LOST_MIN_SPAN iris radii); it is 1 where the upper lid is usually found, falling to 0 where it is
        usually lost (UPPER_LOST_SHARE).
        """
        self._upper_lost.append((y, lost))
        self._upper_noted += 1
        if self._upper_noted % REFRESH_EVERY:
            return
        low, high, iris = self._pupil_height.low, self._pupil_height.high, self._iris_radius.median
        if low is None or high is None or iris is None or high - low < UPPER_LOST_MIN_SPAN * iris:
            return
        heights, losts = np.asarray(self._upper_lost, np.float64).T
        upper_half = heights <= (low + high) / 2.0
        if np.count_nonzero(upper_half) < UPPER_LOST_MIN_FRAMES:
            return
        share = float(np.mean(losts[upper_half]))
        self._upper_trust = _clamp(
            (UPPER_LOST_SHARE[1] - share) / (UPPER_LOST_SHARE[1] - UPPER_LOST_SHARE[0]), 0.0, 1.0
        )

    def _lower_squeeze(
        self, edges: LidEdges, x: float, y: float, presence: float, iris_half_height_px: float | None
    ) -> float:
        """Squeeze from the lower lid's rise alone, against its own baseline, in units of the iris."""
        relaxed_lower = self._lower_baseline.predict(x, y)
        if relaxed_lower is None or not iris_half_height_px or not _lower_measured(edges):
            return 0.0
        # The lid is pinned at the eye's corners: towards them it rises less (a parabola across the eye, whose
        # middle is about the middle of the pupil positions seen).
        iris_radius = self._iris_radius.median or iris_half_height_px
        across = self._lower_baseline.offset_from_middle(x) / (EYE_HALF_WIDTH_TO_IRIS * iris_radius)
        full_rise_px = SQUEEZE_LOWER_RISE_TO_IRIS * iris_half_height_px * max(1.0 - across * across, MIN_LID_SHAPE)
        level = (relaxed_lower - (edges.lower_y - y)) / full_rise_px
        # A squeezed eye is still open: without a pupil showing, a risen lower lid is closing.
        return _clamp((level - SQUEEZE_DEAD_ZONE) / (1.0 - SQUEEZE_DEAD_ZONE), 0.0, 1.0) * presence

    def _lower_steadiness(self, iris_half_height_px: float | None) -> float:
        """1 where the lower lid is measured steadily enough to tell a squint, falling to 0 where its relaxed
        samples scatter around their fit by a good part of a full squint's rise (1 until that is known)."""
        if not self._lower_baseline.ready or not iris_half_height_px:
            return 1.0
        noise = self._lower_baseline.spread_px / (SQUEEZE_LOWER_RISE_TO_IRIS * iris_half_height_px)
        return _clamp((LOWER_NOISE_TO_RISE[1] - noise) / (LOWER_NOISE_TO_RISE[1] - LOWER_NOISE_TO_RISE[0]), 0.0, 1.0)

    def _shrunk(self, pupil: PupilResult) -> bool:
        usual = self._recent_size.median if self._recent_size.ready else None
        return usual is not None and max(pupil.ellipse_w, pupil.ellipse_h) < BLINK_MIN_SIZE_RATIO * usual

    def _jumped(self, pupil: PupilResult) -> bool:
        """Whether a pupil found during a blink is too far from where the pupil was before it to be it.

        Closed lids offer pupil-like shapes (the lash line) anywhere along the lid; the eye barely moves in a
        blink, so the allowance starts small and grows with the blink's length.
        """
        return self._moved_radii(pupil) > BLINK_JUMP_RADII + BLINK_JUMP_GROWTH_RADII * self._blink_frames

    def _moved_radii(self, pupil: PupilResult) -> float:
        """How far the find is from where the pupil was last seen, in its radii (0 before any was seen)."""
        if self._last_x is None or self._last_y is None or self._last_radius <= 0.0:
            return 0.0
        return math.hypot(pupil.x - self._last_x, pupil.y - self._last_y) / self._last_radius

    def _iris_half_height(self, pupil: PupilResult | None) -> float | None:
        """The iris' vertical half-extent: its half-width with the pupil's aspect (concentric circles)."""
        iris = self._iris_radius.median if self._iris_radius.ready else None
        if iris is None or pupil is None:
            return iris
        _, extent_y = _extents(pupil)
        return float(iris * extent_y / max(pupil.ellipse_w, pupil.ellipse_h, 1e-3) * 2.0)

    def _lid_values(
        self, edges: LidEdges | None, x: float, y: float, presence: float = 1.0
    ) -> tuple[float, float, float]:
        """(openness, widen, squeeze) from the lids against the relaxed baseline at this pupil position."""
        if edges is None:
            return 0.0, 0.0, 0.0
        relaxed = self._baseline.predict(x, y)
        if relaxed is None:
            # Until the user's relaxed lids are learnt, a seen pupil means open (visibility caps it otherwise).
            return 1.0, 0.0, 0.0
        relaxed_gap, relaxed_lower = relaxed
        relaxed_gap = max(relaxed_gap, 1.0)
        # A censored lid is at least as far as the iris' rim: take it as relaxed unless seen further out.
        upper_y, lower_y = edges.upper_y, edges.lower_y
        if math.isnan(upper_y) or math.isnan(lower_y):
            # A lid lost in shadow: nothing is known beyond the pupil being seen (which caps openness). Where the
            # upper lid is usually lost, `update` reads a squint from the lower lid alone.
            return 1.0, 0.0, 0.0
        relaxed_upper_y = y + relaxed_lower - relaxed_gap
        # Widen raises the upper lid. One at the iris' rim is at least that high: where the relaxed lid covers
        # more of the iris, the lid has been raised at least that far (less a margin: the rim is not sharp).
        raised = (relaxed_upper_y - upper_y) / relaxed_gap
        if edges.upper_censored:
            raised -= CENSORED_RAISE_MARGIN
        widen = _clamp((raised - WIDEN_DEAD_ZONE) / WIDEN_GAP_GAIN, 0.0, 1.0)
        if edges.lower_censored:
            lower_y = max(lower_y, y + relaxed_lower)
        if edges.upper_censored:
            upper_y = min(upper_y, relaxed_upper_y)
        # Split the narrowing on the measured gap itself: loss = closing + k x squeeze-loss and
        # lower_rise = LOWER_SHARE_CLOSING x closing + LOWER_SHARE_SQUEEZE x k x squeeze-loss.
        loss = 1.0 - max(lower_y - upper_y, 0.0) / relaxed_gap
        if loss <= 0.0:
            return 1.0, widen, 0.0
        lower_rise = _clamp((relaxed_lower - (edges.lower_y - y)) / relaxed_gap, 0.0, loss)
        squeezed = (lower_rise - LOWER_SHARE_CLOSING * loss) / (LOWER_SHARE_SQUEEZE - LOWER_SHARE_CLOSING)
        # A squeezed eye is still open: without a pupil showing, all of the narrowing is closing.
        squeezed = _clamp(squeezed, 0.0, min(loss, SQUEEZE_GAP_LOSS)) * presence
        # gap / relaxed gap = openness x (1 - squeeze loss), and squeezed = openness x squeeze loss.
        open_share = _clamp(1.0 - loss + squeezed, 0.0, 1.0)
        # A squint lowers the upper lid too (about as much as the lower lid rises): a lower lid risen alone is
        # a baseline not caught up with this gaze yet, so only what the upper lid's drop backs is reported (an upper
        # lid hidden above the iris' rim may have dropped by any amount).
        upper_drop = max((upper_y - relaxed_upper_y) / relaxed_gap, 0.0)
        backed = squeezed
        if not edges.upper_censored:
            backed = min(squeezed, SQUEEZE_UPPER_SLACK * upper_drop / (1.0 - LOWER_SHARE_SQUEEZE))
        level = backed / max(open_share, 1e-3) / SQUEEZE_GAP_LOSS
        squeeze = _clamp((level - SQUEEZE_DEAD_ZONE) / (1.0 - SQUEEZE_DEAD_ZONE), 0.0, 1.0)
        # Closed lids still leave a dark band (lashes, lid margins) of about CLOSED_GAP_RATIO of the gap.
        openness = _clamp((open_share - CLOSED_GAP_RATIO) / (1.0 - CLOSED_GAP_RATIO), 0.0, 1.0)
        return openness, 0.0, squeeze

    def _visibility(self, pupil: PupilResult, dark: float) -> tuple[float, float]:
        """(visibility, presence) of the pupil, each in [0, 1]: see the module docstring.

        Closed lids still offer dark, outlined shapes (the lash line, the crease); they are flat, of the
        wrong size or found at a low confidence, so those cues (in both measures) separate them from a pupil.
        `dark` is `pupil_dark_fraction` of this frame.
        """
        if pupil.confidence < self.confident:
            return 0.0, 0.0
        long_axis = max(pupil.ellipse_w, pupil.ellipse_h, 1e-3)
        aspect = _aspect(pupil)
        # A detector's confidence scale depends on the camera: ramps move down for a user whose pupil is
        # usually found at a lower confidence.
        shift = 0.0
        if self._confidence.ready and self._confidence.median is not None:
            shift = max(VISIBLE_CONFIDENCE[1] - (self._confidence.median - VISIBLE_CONFIDENCE_BELOW_USUAL), 0.0)
        confidence = (pupil.confidence + shift - VISIBLE_CONFIDENCE[0]) / (
            VISIBLE_CONFIDENCE[1] - VISIBLE_CONFIDENCE[0]
        )
        confidence_present = (pupil.confidence + shift - PRESENT_CONFIDENCE[0]) / (
            PRESENT_CONFIDENCE[1] - PRESENT_CONFIDENCE[0]
        )
        shape = [(aspect - VISIBLE_ASPECT[0]) / (VISIBLE_ASPECT[1] - VISIBLE_ASPECT[0])]
        usual = self._recent_size.median if self._recent_size.ready else None
        if usual:
            size_log = math.log(long_axis / usual)
            tolerance = LARGER_TOLERANCE_LOG if size_log > 0.0 else SIZE_TOLERANCE_LOG
            shape.append(1.0 - (abs(size_log) - tolerance) / SIZE_SPAN_LOG)
        seen, present = [confidence, *shape], [confidence_present, *shape]
        usual_height = self._pupil_height_ratio.median if self._pupil_height_ratio.ready else None
        if usual_height:
            low, high = (usual_height * k for k in VISIBLE_HEIGHT_TO_USUAL)
            seen.append((_height_to_width(pupil) - low) / (high - low))
            low, high = (usual_height * k for k in PRESENT_HEIGHT_TO_USUAL)
            present.append((_height_to_width(pupil) - low) / (high - low))
        usual_dark = self._dark_fraction.median if self._dark_fraction.ready else None
        if usual_dark:
            low, high = (usual_dark * k for k in VISIBLE_DARK_TO_USUAL)
            seen.append((dark - low) / (high - low))
            low, high = (usual_dark * k for k in PRESENT_DARK_TO_USUAL)
            present.append((dark - low) / (high - low))
        return _clamp(min(seen), 0.0, 1.0), _clamp(min(present), 0.0, 1.0)

    def _dilation(self, pupil: PupilResult, seen: bool) -> float:
        sizes = self._pupil_size
        if not seen or len(sizes.values) < MIN_DILATION_SAMPLES or sizes.low is None or sizes.high is None:
            return 0.5
        if sizes.median is None or sizes.high - sizes.low < MIN_DILATION_RANGE * sizes.median:
            return 0.5
        size = max(pupil.ellipse_w, pupil.ellipse_h)
        return _clamp((size - sizes.low) / (sizes.high - sizes.low), 0.0, 1.0)

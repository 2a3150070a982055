"""The virtual eye: rendering matches its ground truth, the script behaves, the source paces frames."""

from __future__ import annotations

import math
import time

import cv2
import numpy as np
import pytest

from app.camera.base import CapturedFrame, SourceError
from app.camera.virtual_eye import (
    PRESETS,
    EyeGroundTruth,
    EyeState,
    GazeScript,
    VirtualEyeSource,
    render_eye,
)

EASY = PRESETS["easy"]
DARK_PUPIL_THRESHOLD = 40  # easy preset: pupil ~5, iris and everything else well above


def _render(state: EyeState, preset_name: str = "easy", seed: int = 0) -> tuple[np.ndarray, EyeGroundTruth]:
    return render_eye(state, PRESETS[preset_name], np.random.default_rng(seed))


def _pupil_area_px(gray: np.ndarray) -> float:
    """Pixels of the largest region darker than the pupil/iris midpoint of the easy preset."""
    mask = (gray < (5 + 110) // 2).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask)
    return float(stats[1:, cv2.CC_STAT_AREA].max()) if count > 1 else 0.0


def _dark_blob(gray: np.ndarray) -> tuple[tuple[float, float], tuple[float, float], float] | None:
    mask = (gray < DARK_PUPIL_THRESHOLD).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    biggest = max(contours, key=cv2.contourArea)
    if len(biggest) < 5:
        return None
    (cx, cy), (w, h), angle = cv2.fitEllipse(biggest)
    return (cx, cy), (w, h), angle


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_render_is_deterministic_and_sized_for_every_preset(name: str) -> None:
    preset = PRESETS[name]
    state = EyeState(gaze_x=0.3, gaze_y=-0.2, openness=0.9, dilation=0.4, widen=0.1)
    gray_a, truth_a = _render(state, name, seed=5)
    gray_b, truth_b = _render(state, name, seed=5)
    assert gray_a.dtype == np.uint8
    assert gray_a.shape == (preset.height_px, preset.width_px)
    assert np.array_equal(gray_a, gray_b)
    assert truth_a == truth_b
    # A grey eye image, not a blank or saturated one.
    assert 60 < float(gray_a.mean()) < 220
    assert float(gray_a.std()) > 10


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_any_state_renders_with_consistent_truth(name: str) -> None:
    preset = PRESETS[name]
    rng = np.random.default_rng(11)
    corners = [EyeState(x, y, 1.0, 1.0) for x in (-1.0, 1.0) for y in (-1.0, 1.0)]
    randoms = [
        EyeState(*rng.uniform(-1.0, 1.0, 2), *rng.uniform(0.0, 1.0, 2), *rng.uniform(0.0, 1.0, 2)) for _ in range(25)
    ]
    for state in [*corners, *randoms, EyeState(3.0, -7.0, 2.0, -1.0, 5.0, -5.0)]:
        gray, truth = render_eye(state, preset, rng)
        assert gray.shape == (preset.height_px, preset.width_px)
        assert 0.0 <= truth.pupil_visible_fraction <= 1.0
        assert 0.0 < truth.pupil_w <= truth.pupil_h
        assert 0.0 <= truth.pupil_angle_deg < 180.0
        assert truth.blink == (truth.state.openness < 0.2)
        assert -1.0 <= truth.state.gaze_x <= 1.0 and 0.0 <= truth.state.widen <= 1.0
        assert all(0.0 <= x < preset.width_px and 0.0 <= y < preset.height_px for x, y in truth.glints_px)


def test_noise_comes_from_the_generator() -> None:
    state = EyeState(0.0, 0.0, 1.0, 0.5)
    gray_a, _ = _render(state, "default", seed=1)
    gray_b, _ = _render(state, "default", seed=2)
    assert not np.array_equal(gray_a, gray_b)


@pytest.mark.parametrize(
    "state",
    [
        EyeState(0.0, 0.0, 1.0, 0.5),
        EyeState(0.6, -0.3, 1.0, 0.2),
        EyeState(-0.7, 0.2, 1.0, 0.9),
        EyeState(0.9, 0.5, 1.0, 0.0),
        EyeState(-0.4, -0.6, 1.0, 0.4, squeeze=0.5),
    ],
)
def test_rendered_pupil_agrees_with_truth(state: EyeState) -> None:
    gray, truth = _render(state)
    assert truth.pupil_visible_fraction > 0.999
    blob = _dark_blob(gray)
    assert blob is not None
    (cx, cy), (w, h), angle = blob
    assert math.hypot(cx - truth.pupil_x, cy - truth.pupil_y) < 0.2
    # A contour through the boundary pixels' centres sits up to half a pixel inside the true outline.
    assert -1.6 < w - truth.pupil_w < 0.3
    assert -1.6 < h - truth.pupil_h < 0.3
    if truth.pupil_h - truth.pupil_w > 3.0:
        diff = abs(angle - truth.pupil_angle_deg) % 180.0
        assert min(diff, 180.0 - diff) < 3.0
    # The dark area is the truth's ellipse area (the threshold sits at the pupil/iris midpoint).
    area = _pupil_area_px(gray)
    assert area == pytest.approx(math.pi * truth.pupil_w * truth.pupil_h / 4.0, rel=0.03)


@pytest.mark.parametrize(
    "state",
    [
        EyeState(0.0, 0.0, 0.5, 0.5),
        EyeState(0.0, 0.0, 0.3, 0.8),
        EyeState(0.3, 0.9, 1.0, 1.0),
        EyeState(0.0, 0.0, 0.7, 1.0, squeeze=1.0),
        EyeState(0.2, -0.2, 0.25, 0.2),
    ],
)
def test_visible_fraction_is_the_dark_area_left_by_the_lids(state: EyeState) -> None:
    gray, truth = _render(state)
    assert 0.1 < truth.pupil_visible_fraction < 0.99
    dark = _pupil_area_px(gray)
    full = math.pi * truth.pupil_w * truth.pupil_h / 4.0
    assert dark / full == pytest.approx(truth.pupil_visible_fraction, abs=0.02)


def test_truth_ellipse_is_foreshortened_by_the_rotation() -> None:
    _, ahead = _render(EyeState(0.0, 0.0, 1.0, 0.5))
    _, right = _render(EyeState(1.0, 0.0, 1.0, 0.5))
    _, up = _render(EyeState(0.0, 1.0, 1.0, 0.5))
    assert ahead.pupil_w == pytest.approx(ahead.pupil_h)
    # Turned by the full angle: the horizontal axis shrinks by its cosine.
    assert right.pupil_h == pytest.approx(ahead.pupil_h)
    assert right.pupil_w / right.pupil_h == pytest.approx(math.cos(math.radians(EASY.max_gaze_angle_deg)), rel=1e-6)
    assert right.pupil_angle_deg == pytest.approx(0.0, abs=1e-6)
    assert up.pupil_w < up.pupil_h
    assert up.pupil_angle_deg == pytest.approx(90.0, abs=1e-6)


def test_gaze_direction_convention_and_travel() -> None:
    w, h = EASY.width_px, EASY.height_px
    _, centre = _render(EyeState(0.0, 0.0, 1.0, 0.5))
    assert (centre.pupil_x, centre.pupil_y) == pytest.approx((w / 2, h / 2))
    right_gray, right = _render(EyeState(1.0, 0.0, 1.0, 0.5))
    up_gray, up = _render(EyeState(0.0, 1.0, 1.0, 0.5))
    # The camera faces the eye: looking right moves the pupil to the image's left; looking up moves it up.
    assert right.pupil_x < w / 2 - 0.15 * w
    assert up.pupil_y < h / 2 - 0.15 * h
    assert right.pupil_x - w / 2 == pytest.approx(-0.2 * w, rel=0.05)
    assert up.pupil_y - h / 2 == pytest.approx(-0.2 * h, rel=0.05)
    right_blob = _dark_blob(right_gray)
    up_blob = _dark_blob(up_gray)
    assert right_blob is not None and up_blob is not None
    assert right_blob[0][0] < w / 2 - 0.15 * w
    assert up_blob[0][1] < h / 2 - 0.15 * h
    # The default mapping, gaze = -(n - 0.5) / 0.25, reads about 0.8 at gaze 1: the sign and scale are
    # right, and a calibration refines the range.
    assert -(right.pupil_x / w - 0.5) / 0.25 == pytest.approx(0.8, abs=0.05)
    assert -(up.pupil_y / h - 0.5) / 0.25 == pytest.approx(0.8, abs=0.05)


def test_a_closed_eye_hides_the_pupil() -> None:
    gray, truth = _render(EyeState(0.0, 0.0, 0.0, 0.7))
    assert truth.blink
    assert truth.pupil_visible_fraction == 0.0
    assert truth.lid_gap_px == 0.0
    assert int((gray < DARK_PUPIL_THRESHOLD).sum()) == 0
    _, nearly = _render(EyeState(0.0, 0.0, 0.1, 0.7))
    assert nearly.blink and nearly.pupil_visible_fraction < 0.05


def test_openness_is_monotone_with_the_rendered_aperture() -> None:
    closed, _ = _render(EyeState(0.2, 0.1, 0.0, 0.5))
    previous_area, previous_gap, previous_visible = -1, -1.0, -1.0
    for openness in np.linspace(0.0, 1.0, 11):
        gray, truth = _render(EyeState(0.2, 0.1, float(openness), 0.5))
        # The opening is where the render differs from the closed eye (skin there instead).
        area = int((np.abs(gray.astype(np.int16) - closed.astype(np.int16)) > 6).sum())
        assert area > previous_area or openness == 0.0
        assert truth.lid_gap_px > previous_gap or openness == 0.0
        assert truth.pupil_visible_fraction >= previous_visible
        assert truth.blink == (openness < 0.2)
        previous_area, previous_gap, previous_visible = area, truth.lid_gap_px, truth.pupil_visible_fraction
    assert previous_visible == pytest.approx(1.0)


def test_gap_is_openness_times_the_open_gap() -> None:
    _, relaxed = _render(EyeState(0.0, 0.0, 1.0, 0.5))
    _, half = _render(EyeState(0.0, 0.0, 0.5, 0.5))
    _, looking_down = _render(EyeState(0.0, -0.8, 0.5, 0.5))
    assert half.lid_gap_px == pytest.approx(0.5 * relaxed.lid_gap_px)
    assert looking_down.lid_gap_px == pytest.approx(half.lid_gap_px)
    _, widened = _render(EyeState(0.0, 0.0, 1.0, 0.5, widen=1.0))
    _, widened_half = _render(EyeState(0.0, 0.0, 0.5, 0.5, widen=1.0))
    assert widened_half.lid_gap_px == pytest.approx(0.5 * widened.lid_gap_px)


def test_widen_opens_and_squeeze_narrows_with_the_pupil_visible() -> None:
    closed_gray, _ = _render(EyeState(0.0, 0.0, 0.0, 0.0))
    relaxed_gray, relaxed = _render(EyeState(0.0, 0.0, 1.0, 0.0))
    widened_gray, widened = _render(EyeState(0.0, 0.0, 1.0, 0.0, widen=1.0))
    squeezed_gray, squeezed = _render(EyeState(0.0, 0.0, 1.0, 0.0, squeeze=1.0))
    assert widened.lid_gap_px > 1.15 * relaxed.lid_gap_px
    assert squeezed.lid_gap_px < 0.75 * relaxed.lid_gap_px
    assert squeezed.pupil_visible_fraction > 0.9

    def opening(gray: np.ndarray) -> np.ndarray:
        return np.abs(gray.astype(np.int16) - closed_gray.astype(np.int16)) > 6

    relaxed_open, widened_open = opening(relaxed_gray), opening(widened_gray)
    assert widened_open.sum() > 1.15 * relaxed_open.sum()
    assert opening(squeezed_gray).sum() < 0.85 * relaxed_open.sum()
    # Widen uncovers eye above the iris: the newly opened pixels lie above the pupil.
    rows, _ = np.nonzero(widened_open & ~relaxed_open)
    assert float(np.median(rows)) < relaxed.pupil_y - relaxed.pupil_h
    dark_squeezed = int((squeezed_gray < DARK_PUPIL_THRESHOLD).sum())
    assert dark_squeezed > 0.9 * int((relaxed_gray < DARK_PUPIL_THRESHOLD).sum())


def test_glints_are_saturated_and_reported() -> None:
    gray, truth = render_eye(EyeState(0.0, 0.0, 1.0, 0.5), PRESETS["hard"], np.random.default_rng(0))
    assert len(truth.glints_px) >= 2
    for gx, gy in truth.glints_px:
        # Saturated at the core (a heavy JPEG may shave a level or two off the very centre pixel).
        assert int(gray[round(gy) - 2 : round(gy) + 3, round(gx) - 2 : round(gx) + 3].max()) >= 250
        # On the pupil edge in the hard preset.
        distance = math.hypot(gx - truth.pupil_x, gy - truth.pupil_y)
        assert 0.3 * truth.pupil_w < distance < 0.8 * truth.pupil_h


def test_gaze_script_is_a_pure_function_of_seed_and_time() -> None:
    times = [0.0, 0.37, 5.5, 12.25, 29.9, 1234.5]
    forward = [GazeScript(3).state_at(t) for t in times]
    backward = [GazeScript(3).state_at(t) for t in reversed(times)][::-1]
    assert forward == backward
    assert forward != [GazeScript(4).state_at(t) for t in times]


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_gaze_script_covers_the_range_and_blinks(seed: int) -> None:
    script = GazeScript(seed)
    times = np.arange(0.0, 30.0, 1.0 / 120.0)
    states = [script.state_at(float(t)) for t in times]
    gaze_x = np.array([s.gaze_x for s in states])
    gaze_y = np.array([s.gaze_y for s in states])
    openness = np.array([s.openness for s in states])
    assert gaze_x.min() <= -0.8 and gaze_x.max() >= 0.8
    assert gaze_y.min() <= -0.8 and gaze_y.max() >= 0.8
    assert all(-1.0 <= s.gaze_x <= 1.0 and -1.0 <= s.gaze_y <= 1.0 for s in states)
    for start in range(0, 30, 10):
        window = openness[(times >= start) & (times < start + 10)]
        assert window.min() < 0.05, f"no blink in [{start}, {start + 10}) s"
    # A blink is short: closed (< 0.2) for under 300 ms at a time.
    closed = openness < 0.2
    edges = np.flatnonzero(np.diff(closed.astype(np.int8)))
    runs = np.diff(edges)[::2] if not closed[0] else np.diff(edges)[1::2]
    assert runs.size > 0 and runs.max() / 120.0 < 0.3
    # Saccades: some frame-to-frame gaze jumps are fast; pursuit and fixation are slow.
    speed = np.hypot(np.diff(gaze_x), np.diff(gaze_y)) * 120.0
    assert speed.max() > 5.0
    assert float(np.median(speed)) < 1.0
    dilation = np.array([s.dilation for s in states])
    assert dilation.max() - dilation.min() > 0.3


def test_gaze_script_has_widen_and_squeeze_episodes() -> None:
    states = [GazeScript(0).state_at(float(t)) for t in np.arange(0.0, 120.0, 0.05)]
    assert max(s.widen for s in states) > 0.4
    assert max(s.squeeze for s in states) > 0.4
    assert min(s.openness for s in states if s.openness > 0.95 or s.openness < 0.9) < 0.05


def test_unpaced_source_renders_the_script_with_truth() -> None:
    source = VirtualEyeSource("small", seed=2, paced=False)
    source.open()
    try:
        frames = [source.read(0.1) for _ in range(20)]
    finally:
        source.close()
    assert all(isinstance(f, CapturedFrame) for f in frames)
    captured = [f for f in frames if f is not None]
    assert captured[0].gray.shape == (60, 100)
    assert all(isinstance(f.truth, EyeGroundTruth) for f in captured)
    stamps = [f.capture_ts for f in captured]
    assert stamps == sorted(stamps)
    assert source.counters.received == 20 and source.counters.decoded == 20


def test_paced_source_delivers_its_frame_rate_and_times_out() -> None:
    source = VirtualEyeSource("fast", seed=1, fps=60.0)
    source.open()
    try:
        first = source.read(1.0)
        assert first is not None
        assert source.read(0.001) is None  # the next frame is ~16 ms away
        start = time.monotonic()
        count = 0
        while time.monotonic() - start < 0.5:
            if source.read(0.1) is not None:
                count += 1
    finally:
        source.close()
    assert 20 <= count <= 33, count


def test_source_with_an_injected_clock_waits_at_most_the_timeout() -> None:
    now = [100.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    source = VirtualEyeSource("fast", seed=0, fps=50.0, clock=lambda: now[0], sleep=sleep)
    source.open()
    first = source.read(0.5)
    assert first is not None and first.capture_ts == 100.0
    assert source.read(0.005) is None
    assert sleeps == [0.005]
    second = source.read(0.5)
    assert second is not None
    assert now[0] == pytest.approx(100.02)
    assert isinstance(second.truth, EyeGroundTruth)
    expected = GazeScript(0).state_at(0.02)
    assert second.truth.state.gaze_x == pytest.approx(expected.gaze_x)
    assert second.truth.state.gaze_y == pytest.approx(expected.gaze_y)


def test_unknown_preset_and_unopened_reads_raise_source_error() -> None:
    with pytest.raises(SourceError, match="default"):
        VirtualEyeSource("no-such-preset")
    source = VirtualEyeSource("easy")
    with pytest.raises(SourceError):
        source.read(0.1)

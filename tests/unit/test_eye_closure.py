"""The eye-closure classifier (the shipped network, run by OpenCV) and its flag over time."""

from __future__ import annotations

import numpy as np
import pytest

from app.camera.virtual_eye import PRESETS, EyeState, render_eye
from app.config.models import TrackerConfig
from app.tracking.eye_closure import CLOSING_OFF, CLOSING_ON, ClosingFlag, EyeClosureClassifier
from app.tracking.pipeline import EyePipeline

# Seeds the training script does not render with (it uses 1234).
SEEDS = (5, 6)


def _frames(openness: float, preset: str, seed: int, count: int = 12) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        state = EyeState(
            gaze_x=rng.uniform(-0.8, 0.8), gaze_y=rng.uniform(-0.8, 0.8), openness=openness, dilation=rng.uniform()
        )
        frames.append(render_eye(state, PRESETS[preset], rng)[0])
    return frames


@pytest.mark.parametrize("preset", ["default", "easy", "hard"])
def test_the_shipped_network_tells_closed_from_open_eyes(preset: str) -> None:
    classifier = EyeClosureClassifier()
    for seed in SEEDS:
        closed = [classifier.closed_probability(gray) for gray in _frames(0.05, preset, seed)]
        closing = [classifier.closed_probability(gray) for gray in _frames(0.25, preset, seed)]
        open_ = [classifier.closed_probability(gray) for gray in _frames(1.0, preset, seed)]
        assert min(closed) >= 0.8, closed
        assert np.median(closing) >= 0.7, closing
        assert max(open_) <= 0.3, open_


def test_any_frame_size_and_an_empty_frame() -> None:
    classifier = EyeClosureClassifier()
    gray = _frames(1.0, "default", 5, 1)[0]
    for height, width in ((240, 240), (66, 146), (480, 640), (8, 8)):
        resized = np.ascontiguousarray(np.resize(gray, (height, width)))
        assert 0.0 <= classifier.closed_probability(resized) <= 1.0
    flat = np.full((64, 64), 128, np.uint8)  # no contrast at all: no division by zero
    assert 0.0 <= classifier.closed_probability(flat) <= 1.0
    assert classifier.closed_probability(np.zeros((0, 0), np.uint8)) == 0.0


def test_closing_flag_hysteresis() -> None:
    flag = ClosingFlag()
    between = (CLOSING_ON + CLOSING_OFF) / 2
    assert not flag.update(between)  # not on yet
    assert flag.update(CLOSING_ON)
    assert flag.update(between)  # stays on
    assert not flag.update(CLOSING_OFF - 0.01)
    assert not flag.update(between)


def test_a_closing_eye_is_a_blink_and_the_switch_turns_it_off() -> None:
    """Lids most of the way down over the pupil (openness 0.4): the lids alone flag a third of these frames (measured
    9 of 25), the classifier all of them."""

    def run(config: TrackerConfig) -> list[bool]:
        pipeline = EyePipeline(config)
        rng = np.random.default_rng(9)
        flags = []
        for index in range(150):
            openness = 1.0 if index < 120 else 0.4
            gray, _ = render_eye(EyeState(0.1, 0.0, openness, 0.5), PRESETS["default"], rng)
            flags.append(pipeline.process(gray, index / 60.0).blink)
        return flags

    flags = run(TrackerConfig())
    assert not any(flags[60:120])
    assert sum(flags[125:]) >= 20
    off = TrackerConfig.model_validate({"algorithm": {"closure_classifier": False}})
    assert sum(run(off)[125:]) <= 15


def test_a_closing_eye_gets_a_short_pupil_search_and_an_open_one_the_full_search() -> None:
    """A sliver of pupil under closing lids once had every candidate refined by every algorithm: 10-20 ms a frame,
    the pipeline's slowest frames. Once the pupil is unclear and the classifier is sure the eye is closing, the
    search refines at most CLOSING_REFINES_PER_FRAME candidates; the open eye after it is searched in full."""
    pipeline = EyePipeline(TrackerConfig())
    rng = np.random.default_rng(4)
    script = [1.0] * 90 + [0.15] * 20 + [1.0] * 40
    found_after = []
    for index, openness in enumerate(script):
        gray, truth = render_eye(EyeState(0.2, -0.1, openness, 0.5), PRESETS["default"], rng)
        result = pipeline.process(gray, index / 60.0)
        if index >= 115:
            found_after.append(abs(result.pupil.x - truth.pupil_x) < 2.0 and result.pupil.confidence >= 0.5)
    assert 10 <= pipeline.short_searches <= 21  # measured 19 of the 20 closing frames (the first follows an open one)
    assert all(found_after)


def test_the_refinement_budget_bounds_the_search() -> None:
    from app.config.models import AlgorithmConfig
    from app.tracking.pupil.tracker import PupilTracker

    gray = _frames(1.0, "default", 5, 1)[0]
    tracker = PupilTracker(AlgorithmConfig.model_validate({"algorithm_order": ["HSRAC"]}))
    assert tracker.detect(gray, max_refines=0).confidence == 0.0
    assert tracker.detect(gray, max_refines=1).confidence >= 0.9


def test_the_network_keeps_a_closing_eye_from_reading_open() -> None:
    """Lids held most of the way down (openness 0.4): the lids alone now and then read the eye well open when a
    shape on the lids passes for a pupil (measured up to 0.74); the network's certainty caps openness at 0.4."""

    def raw_openness(config: TrackerConfig) -> list[float]:
        pipeline = EyePipeline(config)
        rng = np.random.default_rng(9)
        out = []
        for index in range(150):
            gray, _ = render_eye(EyeState(0.1, 0.0, 1.0 if index < 120 else 0.4, 0.5), PRESETS["default"], rng)
            out.append(pipeline.process(gray, index / 60.0).raw_openness)
        return out[125:]

    assert max(raw_openness(TrackerConfig())) <= 0.41
    assert max(raw_openness(TrackerConfig.model_validate({"algorithm": {"closure_classifier": False}}))) >= 0.6


def test_a_network_that_cannot_load_leaves_blinks_to_the_lids() -> None:
    classifier = EyeClosureClassifier(b"this is not an ONNX file")
    assert "could not be loaded" in classifier.problem
    assert classifier.closed_probability(_frames(0.05, "default", 5, 1)[0]) == 0.0
    pipeline = EyePipeline(TrackerConfig(), closure_model=b"broken")
    assert "lids alone" in pipeline.closure_problem
    result = pipeline.process(_frames(1.0, "default", 5, 1)[0], 0.0)
    assert result.pupil.confidence >= 0.9 and result.closure == 0.0
    assert EyePipeline(TrackerConfig()).closure_problem == ""


@pytest.mark.parametrize("shape", [(240, 240), (240, 408), (150, 200), (98, 128), (480, 640), (128, 128), (54, 104)])
def test_the_networks_input_is_opencvs_area_shrink(shape: tuple[int, int]) -> None:
    # Big frames whose sides are not whole multiples of the input take the integral-image way: the same area means,
    # rounded to whole grey levels (a rounding tie may land on the other level).
    import cv2

    from app.tracking.eye_closure import INPUT_PX, area_shrunk

    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    gray = np.asarray(cv2.GaussianBlur(rng.integers(0, 256, shape).astype(np.uint8), (5, 5), 0), np.uint8)
    gray[: shape[0] // 3, : shape[1] // 2] = 255  # a saturated block: large sums, and sharp box edges
    expected = cv2.resize(gray, (INPUT_PX, INPUT_PX), interpolation=cv2.INTER_AREA).astype(np.float32)
    small = area_shrunk(gray, INPUT_PX)
    assert small.shape == (INPUT_PX, INPUT_PX) and small.dtype == np.float32
    # Where the two differ, the exact area mean (OpenCV's shrink of the frame in float64) is a tie between two levels.
    exact = cv2.resize(gray.astype(np.float64), (INPUT_PX, INPUT_PX), interpolation=cv2.INTER_AREA)
    differs = small != expected
    assert np.abs(small - expected).max() <= 1.0
    assert np.all(np.abs(exact[differs] % 1.0 - 0.5) < 1e-3)
    assert np.mean(differs) < 0.01

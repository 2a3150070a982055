"""Still frames reuse the last fully tracked frame's result: only when nothing moved, never for long."""

from __future__ import annotations

import math

import numpy as np

from app.camera.virtual_eye import PRESETS, EyeState, GazeScript, render_eye
from app.config.models import TrackerConfig
from app.tracking.openness import SETTLED_SAMPLES
from app.tracking.pipeline import EyePipeline
from app.tracking.still import MAX_REUSES, STILL_CONTRAST_FRACTION, StillFrames


def _small(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(40, 200, (60, 60), dtype=np.uint8)


def _eye(gaze_x: float = 0.0, openness: float = 1.0, seed: int = 0) -> np.ndarray:
    gray, _ = render_eye(EyeState(gaze_x, 0.1, openness, 0.5), PRESETS["easy"], np.random.default_rng(seed))
    return gray


def _pipeline(reuse: bool = True, gate: bool = True) -> EyePipeline:
    config = TrackerConfig()
    algorithm = config.algorithm.model_copy(update={"still_frame_reuse": reuse, "closed_eye_gate": gate})
    return EyePipeline(config.model_copy(update={"algorithm": algorithm}))


def _settled(pipeline: EyePipeline) -> EyePipeline:
    """The pipeline after the scripted eye looked around long enough for the lids to be learnt (8 s; measured: the
    first frame is reused after 6.2 s, once SETTLED_SAMPLES plainly seen frames were tracked)."""
    preset, script, rng = PRESETS["easy"], GazeScript(1), np.random.default_rng(1)
    for index in range(720):
        pipeline.process(render_eye(script.state_at(index / preset.fps), preset, rng)[0], index / preset.fps)
    return pipeline


def test_a_frame_within_the_contrast_fraction_of_the_key_is_still_one_beyond_it_is_not() -> None:
    still = StillFrames()
    key = _small()
    assert not still.still(key, 100.0)  # no key frame yet
    still.keep(key)
    assert still.still(key.copy(), 100.0)
    assert not still.still(key.copy(), None)  # no learnt contrast: nothing is reused
    moved = key.copy()
    moved[30, 30] = min(255, int(moved[30, 30]) + math.ceil(STILL_CONTRAST_FRACTION * 100.0) + 1)
    assert not still.still(moved, 100.0)  # one pixel is enough
    assert not still.still(key[:50], 100.0)  # another size: a new source
    still.forget()
    assert not still.still(key, 100.0)
    assert still.reused == 1


def test_a_key_frame_serves_at_most_max_reuses_frames_in_a_row() -> None:
    still = StillFrames()
    key = _small()
    still.keep(key)
    reused = [still.still(key, 100.0) for _ in range(MAX_REUSES + 3)]
    assert reused == [True] * MAX_REUSES + [False] * 3
    still.keep(key)  # tracked in full again: a new run
    assert still.still(key, 100.0)


def test_the_pipeline_reuses_a_repeated_frame_and_tracks_a_moved_one() -> None:
    pipeline = _settled(_pipeline())
    first = pipeline.process(_eye(gaze_x=-0.2), 5.0)  # moved: tracked in full
    reused, refined = pipeline.still_frames, pipeline.refinements
    again = pipeline.process(_eye(gaze_x=-0.2), 5.01)
    assert pipeline.still_frames == reused + 1 and pipeline.refinements == refined  # nothing was refined
    assert again.pupil == first.pupil and again.raw_openness == first.raw_openness
    # A pupil moved by about two pixels changes the shrunk frame by far more than the threshold: tracked again.
    moved = pipeline.process(_eye(gaze_x=-0.16), 5.02)
    assert pipeline.still_frames == reused + 1 and pipeline.refinements > refined
    assert abs(moved.pupil.x - first.pupil.x) > 1.0


def test_no_frame_is_reused_before_the_lids_are_learnt() -> None:
    pipeline = _pipeline()
    for i in range(SETTLED_SAMPLES - 10):  # the same frame over and over: the lids have not learnt enough yet
        pipeline.process(_eye(), i / 90)
    assert pipeline.still_frames == 0
    for i in range(30):
        pipeline.process(_eye(), 5.0 + i / 90)
    assert pipeline.still_frames > 0


def test_with_the_closed_eye_gate_off_still_frames_are_reused_all_the_same() -> None:
    pipeline = _settled(_pipeline(gate=False))  # the gate's view of the frame and its levels are kept for reuse
    for i in range(2):  # moved there: tracked in full (the first frame after a jump does not make a key frame)
        pipeline.process(_eye(gaze_x=0.3), 9.0 - 0.02 + i / 90)
    reused = pipeline.still_frames
    again = [pipeline.process(_eye(gaze_x=0.3), 9.01 + i / 90) for i in range(3)]
    assert pipeline.still_frames == reused + 3 and pipeline.closed_eye_skips == 0
    assert all(result.pupil.confidence >= 0.9 for result in again)


def test_with_reuse_off_every_frame_is_tracked() -> None:
    pipeline = _settled(_pipeline(reuse=False))
    refined = pipeline.refinements
    for i in range(12):
        pipeline.process(_eye(seed=3), 5.0 + i / 90)
    assert pipeline.still_frames == 0 and pipeline.refinements >= refined + 12


def test_new_algorithm_settings_track_the_next_frame_in_full() -> None:
    pipeline = _settled(_pipeline())
    pipeline.process(_eye(gaze_x=0.3), 5.0)
    pipeline.process(_eye(gaze_x=0.3), 5.01)
    reused = pipeline.still_frames
    assert reused > 0
    config = pipeline.config
    pipeline.update_config(
        config.model_copy(update={"algorithm": config.algorithm.model_copy(update={"confidence_threshold": 0.6})})
    )
    pipeline.process(_eye(gaze_x=0.3), 5.02)
    assert pipeline.still_frames == reused


def test_a_closed_eye_is_never_a_key_frame() -> None:
    pipeline = _settled(_pipeline())
    reused = pipeline.still_frames
    results = [pipeline.process(_eye(openness=0.0), 5.0 + i / 90) for i in range(5)]
    assert pipeline.still_frames == reused and all(result.blink for result in results)


def test_reused_frames_stay_within_a_pixel_of_the_truth_on_the_scripted_eye() -> None:
    preset, script, rng = PRESETS["bench90"], GazeScript(7), np.random.default_rng(7)
    pipeline = _pipeline()
    errors = []
    for index in range(900):
        gray, truth = render_eye(script.state_at(index / preset.fps), preset, rng)
        before = pipeline.still_frames
        result = pipeline.process(gray, index / preset.fps)
        if pipeline.still_frames > before:
            errors.append(math.hypot(result.pupil.x - truth.pupil_x, result.pupil.y - truth.pupil_y))
    # Measured: 103 of the 360 frames reused, their error at most 0.45 px (tracked in full: about 0.1 px).
    assert len(errors) > 30
    assert max(errors) < 1.0

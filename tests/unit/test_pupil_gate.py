"""The closed-eye gate: learns the pupil's and iris's levels, skips frames with nothing pupil-dark, probes."""

from __future__ import annotations

import numpy as np

from app.camera.virtual_eye import PRESETS, EyeState, render_eye
from app.config.models import TrackerConfig
from app.tracking.pipeline import EyePipeline
from app.tracking.pupil.gate import PROBE_EVERY, PupilGate
from app.tracking.results import PupilResult


def _eye(openness: float, seed: int, gaze_x: float = 0.0) -> np.ndarray:
    gray, _ = render_eye(EyeState(gaze_x, 0.0, openness, 0.5), PRESETS["default"], np.random.default_rng(seed))
    return gray


def _learnt_gate() -> PupilGate:
    pipeline = EyePipeline(TrackerConfig())
    gate = PupilGate()
    for i in range(10):
        gray = _eye(1.0, i)
        assert gate.allows(gray)
        found = pipeline.process(gray, i / 90).pupil
        assert found.confidence >= 0.9
        gate.learn(found)
    return gate


def test_nothing_is_skipped_before_the_levels_are_learnt() -> None:
    gate = PupilGate()
    assert all(gate.allows(_eye(0.0, i)) for i in range(2 * PROBE_EVERY))
    gate.learn(PupilResult.none())
    assert gate.pupil_level is None


def test_a_closed_eye_is_skipped_an_open_or_half_open_one_is_not() -> None:
    gate = _learnt_gate()
    assert gate.pupil_level is not None and gate.iris_level is not None
    assert gate.iris_level - gate.pupil_level > 30
    assert not gate.allows(_eye(0.0, 20))
    for openness in (1.0, 0.6, 0.35):
        assert gate.allows(_eye(openness, 21, gaze_x=0.4)), openness


def test_while_skipping_every_tenth_frame_is_searched_anyway() -> None:
    gate = _learnt_gate()
    allowed = [gate.allows(_eye(0.0, 30 + i)) for i in range(3 * PROBE_EVERY)]
    assert [i for i, a in enumerate(allowed) if a] == [PROBE_EVERY - 1, 2 * PROBE_EVERY - 1, 3 * PROBE_EVERY - 1]
    assert gate.allows(_eye(1.0, 60)) and gate.skipped == 0


def test_the_pipeline_finds_the_pupil_again_on_the_first_open_frame_after_a_long_closure() -> None:
    pipeline = EyePipeline(TrackerConfig())
    ts = 0.0
    for i in range(20):
        ts = i / 90
        pipeline.process(_eye(1.0, i), ts)
    closed = [pipeline.process(_eye(0.0, 100 + i), 1.0 + i / 90) for i in range(90)]
    assert all(r.blink for r in closed)
    assert pipeline.closed_eye_skips == 90 - 90 // PROBE_EVERY  # all but the probes, counted for the status
    # Only the probes searched (and found nothing the lids would call open).
    searched = [i for i, r in enumerate(closed) if r.pupil.confidence > 0.0]
    assert set(searched) <= {i for i in range(90) if i % PROBE_EVERY == PROBE_EVERY - 1}
    reopened = pipeline.process(_eye(1.0, 500, gaze_x=-0.3), 2.5)
    assert reopened.pupil.confidence >= 0.9


def test_with_the_gate_off_every_closed_frame_is_searched() -> None:
    config = TrackerConfig()
    config = config.model_copy(update={"algorithm": config.algorithm.model_copy(update={"closed_eye_gate": False})})
    pipeline = EyePipeline(config)
    for i in range(20):
        pipeline.process(_eye(1.0, i), i / 90)
    closed = [pipeline.process(_eye(0.0, 100 + i), 1.0 + i / 90) for i in range(30)]
    assert all(r.blink for r in closed[3:])
    # The search runs and finds lash-and-lid shapes at low confidence where the gate would have skipped.
    searched = [i for i, r in enumerate(closed) if r.pupil.confidence > 0.0]
    assert len(searched) > 3


def test_a_probe_that_finds_a_clear_pupil_relearns_the_levels() -> None:
    gate = _learnt_gate()
    assert gate.pupil_level is not None
    # The light changed: the whole frame is brighter, so the gate takes the open eye for a closed one.
    bright = np.clip(_eye(1.0, 70).astype(np.int16) + 70, 0, 255).astype(np.uint8)
    pipeline = EyePipeline(TrackerConfig())
    allowed = []
    for i in range(PROBE_EVERY):
        allowed.append(gate.allows(bright))
        if allowed[-1]:
            found = pipeline.process(bright, i / 90).pupil
            assert found.confidence >= 0.9
            gate.learn(found)
    assert allowed == [False] * (PROBE_EVERY - 1) + [True]
    assert gate.pupil_level is not None and gate.pupil_level > 60
    assert gate.allows(bright) and gate.skipped == 0

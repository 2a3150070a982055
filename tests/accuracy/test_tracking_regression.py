"""Regression floors on small fixed-seed sets, a little under the measured figures (see `bench accuracy`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from benchmarks._accuracy_sets import clip_paths, closure_fold_model, load_meye, read_clip, synthetic_frames

from app.config.models import TrackerConfig
from app.tracking.pipeline import EyePipeline


def _synthetic_scores(preset: str, count: int) -> tuple[float, float, float, float]:
    """(within 2 px, openness MAE, widen MAE, squeeze MAE) of the default pipeline over `count` frames."""
    pipeline = EyePipeline(TrackerConfig())
    errors, openness, widen, squeeze = [], [], [], []
    for ts, gray, truth in synthetic_frames(preset, count):
        result = pipeline.process(gray, ts)
        openness.append(abs(result.openness - truth.state.openness))
        widen.append(abs(result.widen - truth.state.widen))
        squeeze.append(abs(result.squeeze - truth.state.squeeze))
        if truth.pupil_visible_fraction >= 0.6:
            found = result.pupil.confidence >= 0.5
            errors.append(np.hypot(result.pupil.x - truth.pupil_x, result.pupil.y - truth.pupil_y) if found else 99)
    return (
        float(np.mean(np.asarray(errors) <= 2.0)),
        float(np.mean(openness)),
        float(np.mean(widen)),
        float(np.mean(squeeze)),
    )


def test_easy_virtual_eye_floors() -> None:
    # Measured: 1.000, 0.010, 0.000, 0.103 (first 360 frames, seed 7).
    within_2px, openness, widen, squeeze = _synthetic_scores("easy", 360)
    assert within_2px >= 0.98
    assert openness <= 0.03 and widen <= 0.025 and squeeze <= 0.11


def test_hard_virtual_eye_floors() -> None:
    # Measured: 0.977, 0.016, 0.000, 0.039 (first 360 frames, seed 7: a long lid-covered stretch).
    within_2px, openness, widen, squeeze = _synthetic_scores("hard", 360)
    assert within_2px >= 0.62
    assert openness <= 0.09 and widen <= 0.02 and squeeze <= 0.13


def test_meye_pipeline_floor(shared_data: Path) -> None:
    # Every 8th MEYE frame, the pipeline per subject, the eye-closure classifier trained without that subject.
    # Measured: within 2.5 px 0.978, within 1 px 0.957; blink F1 against MEYE's truth 0.800 (lids alone 0.662).
    frames = load_meye(8)
    pipeline: EyePipeline | None = None
    subject = -1
    errors = []
    blink_tp = blink_predicted = blink_truth = 0
    for index, frame in enumerate(frames):
        if frame.subject != subject or pipeline is None:
            subject = frame.subject
            fold = closure_fold_model(subject)
            assert fold is not None, f"no eye-closure model trained without subject {subject}"
            pipeline = EyePipeline(TrackerConfig(), closure_model=fold)
        result = pipeline.process(frame.gray, index / 30.0)
        blink_tp += result.blink and frame.blink_truth
        blink_predicted += result.blink
        blink_truth += frame.blink_truth
        if frame.centroid is not None and not frame.blink:
            cx, cy = frame.centroid
            found = result.pupil.confidence >= 0.5
            errors.append(np.hypot(result.pupil.x - cx, result.pupil.y - cy) if found else 99)
    within = np.asarray(errors)
    assert np.mean(within <= 2.5) >= 0.965 and np.mean(within <= 1.0) >= 0.945
    blink_f1 = 2 * blink_tp / (blink_predicted + blink_truth)
    assert blink_f1 >= 0.78, blink_f1


def test_real_clips_read_few_expressions(shared_data: Path) -> None:
    # Real DIY VR eye clips of users looking around. No truth, but a low-resolution camera whose lower lid wanders
    # by more than a squint moves it must not read squints from that wander. Share of frames with widen or squeeze
    # over 0.3, measured: Demovid 0.021 (0.314 before the lower lid's steadiness was weighed), test2 0.001 (0.145).
    limits = {"Demovid": 0.06, "test2": 0.04}
    paths = [path for path in clip_paths() if any(path.stem.startswith(name) for name in limits)]
    assert len(paths) == len(limits), [path.name for path in clip_paths()]
    for path in paths:
        pipeline = EyePipeline(TrackerConfig())
        readings = [pipeline.process(gray, ts) for ts, gray in read_clip(path, 100_000)]
        expressive = float(np.mean([max(r.widen, r.squeeze) > 0.3 for r in readings]))
        limit = next(value for name, value in limits.items() if path.stem.startswith(name))
        assert expressive <= limit, (path.name, expressive)

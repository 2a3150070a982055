"""Regression floors on a small fixed-seed virtual-eye set, a little under the measured figures."""

from __future__ import annotations

import numpy as np
from benchmarks._accuracy_sets import synthetic_frames

from app.config.models import TrackerConfig
from app.tracking.pipeline import EyePipeline


def test_hard_virtual_eye_pupil_and_openness_floors() -> None:
    pipeline = EyePipeline(TrackerConfig())
    errors, openness_errors = [], []
    for ts, gray, truth in synthetic_frames("hard", 120):
        result = pipeline.process(gray, ts)
        openness_errors.append(abs(result.openness - truth.state.openness))
        if truth.pupil_visible_fraction >= 0.6:
            found = result.pupil.confidence >= 0.5
            errors.append(np.hypot(result.pupil.x - truth.pupil_x, result.pupil.y - truth.pupil_y) if found else 99)
    assert np.mean(np.asarray(errors) <= 2.0) >= 0.9
    assert np.mean(openness_errors) <= 0.15

"""Quick lid-estimator evaluation on the accuracy benchmark's synthetic sets (dev tool, not part of the product).

Renders each (preset, seed) set once and caches the frames with the default pupil tracker's results, then runs
only the lid estimator and the pipeline's filters on them, scoring as `benchmarks/accuracy.py` does.
`python -m benchmarks._lid_eval [easy:7 hard:7 ...]`
"""

from __future__ import annotations

import hashlib
import pickle
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from app.camera.base import GrayImage
from app.camera.virtual_eye import EyeGroundTruth
from app.config.models import TrackerConfig
from app.tracking.openness import LidEstimator, LidState
from app.tracking.pipeline import EyePipeline, _clip, _Filters
from app.tracking.results import PupilResult
from benchmarks._accuracy_sets import load_meye, synthetic_frames
from benchmarks.accuracy import MEYE_TUNING_SUBJECTS

TRACKING = Path(__file__).resolve().parents[1] / "TrackingBackend" / "app" / "tracking"


def _pupil_code_key() -> str:
    """A digest of the pupil stage's sources: cached pupils are thrown away when that code changes."""
    digest = hashlib.sha256()
    for path in sorted([*TRACKING.glob("pupil/*.py"), TRACKING / "pipeline.py"]):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


CACHE = Path(tempfile.gettempdir()) / "etvr-lid-eval" / _pupil_code_key()
COUNT = 900

Frame = tuple[float, GrayImage, EyeGroundTruth, PupilResult]


def _detector() -> Callable[[GrayImage], PupilResult]:
    """The pupil the default pipeline finds in each frame (whatever its pupil stage does: gate, tracker)."""
    pipeline, clock = EyePipeline(TrackerConfig()), [0.0]

    def detect(gray: GrayImage) -> PupilResult:
        clock[0] += 1.0 / 60.0
        return pipeline.process(gray, clock[0]).pupil

    return detect


def load(preset: str, seed: int) -> list[Frame]:
    path = CACHE / f"{preset}_{seed}.pkl"
    if path.is_file():
        with path.open("rb") as handle:
            frames: list[Frame] = pickle.load(handle)
            return frames
    detect = _detector()
    frames = [(ts, gray, truth, detect(gray)) for ts, gray, truth in synthetic_frames(preset, COUNT, seed)]
    CACHE.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        pickle.dump(frames, handle)
    return frames


def run(
    frames: list[Frame],
) -> tuple[dict[str, float], list[tuple[EyeGroundTruth, LidState, tuple[float, float, float]]]]:
    config = TrackerConfig()
    lids = LidEstimator(config.algorithm.confidence_threshold)
    f = _Filters(config.filter)
    errors: dict[str, list[float]] = {"openness": [], "widen": [], "squeeze": [], "relaxed": []}
    blinks = [0, 0, 0]
    rows = []
    for ts, gray, truth, pupil in frames:
        state = lids.update(gray, pupil)
        openness = _clip(f.apply(f.openness, state.openness, ts))
        widen = _clip(f.apply(f.widen, state.widen, ts))
        squeeze = _clip(f.apply(f.squeeze, state.squeeze, ts))
        s = truth.state
        errors["openness"].append(abs(openness - s.openness))
        errors["widen"].append(abs(widen - s.widen))
        errors["squeeze"].append(abs(squeeze - s.squeeze))
        if s.openness >= 0.95 and s.widen < 0.05 and s.squeeze < 0.05:
            errors["relaxed"].append(max(widen, squeeze))
        rows.append((truth, state, (openness, widen, squeeze)))
        blinks[0] += state.blink and truth.blink
        blinks[1] += state.blink and not truth.blink
        blinks[2] += (not state.blink) and truth.blink
    scores = {k: float(np.mean(v)) for k, v in errors.items()}
    precision, recall = blinks[0] / max(blinks[0] + blinks[1], 1), blinks[0] / max(blinks[0] + blinks[2], 1)
    scores["blinkF1"] = 2 * precision * recall / max(precision + recall, 1e-9)
    return scores, rows


def meye_blink() -> str:
    """Blink F1 of the lid estimator on MEYE (MEYE's flags), all subjects and held-out ones, as accuracy.py."""
    path = CACHE / "meye.pkl"
    if path.is_file():
        with path.open("rb") as handle:
            cached: list[tuple[int, bool, GrayImage, PupilResult]] = pickle.load(handle)
    else:
        detect = _detector()
        cached, subject = [], -1
        for frame in load_meye():
            if frame.subject != subject:
                detect, subject = _detector(), frame.subject
            cached.append((frame.subject, frame.blink_truth, frame.gray, detect(frame.gray)))
        CACHE.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            pickle.dump(cached, handle)
    counts = {"all": [0, 0, 0], "held out": [0, 0, 0]}
    lids, subject = LidEstimator(), -1
    for frame_subject, truth, gray, pupil in cached:
        if frame_subject != subject:
            lids, subject = LidEstimator(TrackerConfig().algorithm.confidence_threshold), frame_subject
        blink = lids.update(gray, pupil).blink
        for key in ("all", "held out") if frame_subject not in MEYE_TUNING_SUBJECTS else ("all",):
            counts[key][0] += blink and truth
            counts[key][1] += blink and not truth
            counts[key][2] += (not blink) and truth
    texts = []
    for key, (tp, fp, fn) in counts.items():
        precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
        texts.append(f"{key} F1 {2 * precision * recall / max(precision + recall, 1e-9):.3f}")
    return "MEYE blink " + "  ".join(texts)


def main(argv: list[str]) -> int:
    sets = argv or ["easy:7", "hard:7", "easy:11", "hard:11", "meye"]
    for name in sets:
        if name == "meye":
            print(meye_blink())
            continue
        preset, seed = name.split(":")
        scores, _ = run(load(preset, int(seed)))
        print(f"{name:8s} " + "  ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

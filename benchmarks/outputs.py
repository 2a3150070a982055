"""Whether a change left the pipeline's results as they were: a check for speed-ups meant to change nothing.

`python build.py bench outputs --save FILE` runs the default pipeline over fixed inputs and keeps every frame's
result in FILE (.npz); `python build.py bench outputs --compare FILE` runs it again and prints, per set, how many
frames differ and by how much (exit code 1 when any does). Run `--save` on the code before the change (a git
worktree; one older than this benchmark runs it from this checkout with
`PYTHONPATH=<worktree>/TrackingBackend:. .venv/bin/python -m benchmarks outputs --save FILE`), `--compare` after
it. The inputs: the `bench90` replay loop twice over, the default, easy and hard virtual-eye sets (seed 5), and,
when `../shared/data` is present, the real clips and every 10th MEYE frame.

A frame's result is the pupil (centre, ellipse, confidence) and everything the pipeline reports from it (openness,
blink, dilation, widen, squeeze, gaze). Two runs of the same code give the same numbers to the last bit, so any
difference is the change's. `bench instructions` measures what such a change saves.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.camera.base import GrayImage

COLUMNS = (
    "pupil_x",
    "pupil_y",
    "ellipse_w",
    "ellipse_h",
    "angle",
    "confidence",
    "openness",
    "blink",
    "dilation",
    "widen",
    "squeeze",
    "gaze_x",
    "gaze_y",
)
SYNTHETIC_SEED = 5
BENCH90_FPS = 90.0
BENCH90_FRAMES = 720  # its replayed loop (4 s) twice
CLIP_FRAMES = 300
MEYE_EVERY = 10


def run_pipeline(frames: Iterable[tuple[float, GrayImage]]) -> npt.NDArray[np.float64]:
    """One row of COLUMNS per frame, from a fresh default pipeline."""
    from app.config.models import TrackerConfig
    from app.tracking.pipeline import EyePipeline

    pipeline = EyePipeline(TrackerConfig())
    rows = []
    for ts, gray in frames:
        result = pipeline.process(gray, ts)
        pupil = result.pupil
        rows.append(
            (
                pupil.x,
                pupil.y,
                pupil.ellipse_w,
                pupil.ellipse_h,
                pupil.angle_deg,
                pupil.confidence,
                result.openness,
                float(result.blink),
                result.dilation,
                result.widen,
                result.squeeze,
                result.gaze_x,
                result.gaze_y,
            )
        )
    return np.asarray(rows, np.float64).reshape(-1, len(COLUMNS))


def collect(frames_per_set: int, real_data: bool) -> dict[str, npt.NDArray[np.float64]]:
    """The results of every input set, by set name."""
    from benchmarks._accuracy_sets import clip_paths, load_meye, read_clip, source_frames, synthetic_frames

    results: dict[str, npt.NDArray[np.float64]] = {}
    results["bench90"] = run_pipeline(source_frames("bench90", min(BENCH90_FRAMES, 2 * frames_per_set), BENCH90_FPS))
    for preset in ("default", "easy", "hard"):
        frames = synthetic_frames(preset, frames_per_set, SYNTHETIC_SEED)
        results[preset] = run_pipeline((ts, gray) for ts, gray, _ in frames)
    if real_data:
        for path in clip_paths():
            results[f"clip {path.stem}"] = run_pipeline(read_clip(path, CLIP_FRAMES))
        meye = load_meye(every=MEYE_EVERY)
        if meye:
            results["meye"] = run_pipeline((index / 30.0, frame.gray) for index, frame in enumerate(meye))
    return results


def compare(
    before: dict[str, npt.NDArray[np.float64]], after: dict[str, npt.NDArray[np.float64]]
) -> tuple[bool, list[str]]:
    """(whether every set in both is identical, a report line per set)."""
    identical = True
    lines = []
    for name in sorted(set(before) | set(after)):
        if name not in before or name not in after:
            lines.append(f"  {name:28s} only in the {'new run' if name in after else 'saved file'}: not compared")
            continue
        old, new = before[name], after[name]
        if old.shape != new.shape:
            identical = False
            lines.append(f"  {name:28s} {len(old)} frames saved, {len(new)} now: not compared")
            continue
        same = (old == new) | (np.isnan(old) & np.isnan(new))
        differing = np.flatnonzero(~same.all(axis=1))
        if differing.size == 0:
            lines.append(f"  {name:28s} {len(old):5d} frames identical")
            continue
        identical = False
        gap = np.where(same, 0.0, np.abs(np.nan_to_num(new - old, nan=np.inf)))
        worst = int(np.argmax(gap.max(axis=0)))
        lines.append(
            f"  {name:28s} {differing.size:5d} of {len(old)} frames differ (first: frame {int(differing[0])}); "
            f"largest difference {gap.max():.3g} in {COLUMNS[worst]}, pupil centre {gap[:, :2].max():.3g} px"
        )
    return identical, lines


def _npz(path: Path | None) -> Path | None:
    """The file numpy writes for `path`: it adds .npz to a name without it, so --compare finds what --save wrote."""
    return path if path is None or path.suffix == ".npz" else path.with_name(path.name + ".npz")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench outputs", description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--save", type=Path, help="run and keep the results in this .npz file")
    action.add_argument("--compare", type=Path, help="run and compare with the results saved in this file")
    parser.add_argument("--frames", type=int, default=400, help="frames per virtual-eye set (default 400)")
    parser.add_argument("--quick", action="store_true", help="60 frames a set, no real data (a smoke test)")
    args = parser.parse_args(argv)
    import cv2

    cv2.setNumThreads(1)  # as in the tracker process
    save, compare_with = _npz(args.save), _npz(args.compare)
    if compare_with is not None and not compare_with.is_file():
        print(f"no saved results at {compare_with} (make them with --save)")
        return 2
    frames = 60 if args.quick else args.frames
    results = collect(frames, real_data=not args.quick)
    if save is not None:
        arrays: dict[str, Any] = dict(results)  # (numpy's stub types the keywords as its allow_pickle flag)
        np.savez_compressed(save, **arrays)
        total = sum(len(rows) for rows in results.values())
        print(f"saved the results of {total} frames in {len(results)} sets to {save}")
        return 0
    assert compare_with is not None
    with np.load(compare_with) as saved:
        before = {name: saved[name] for name in saved.files}
    identical, lines = compare(before, results)
    print(f"pipeline results against {compare_with}:")
    print("\n".join(lines))
    print("identical" if identical else "DIFFERENT")
    return 0 if identical else 1

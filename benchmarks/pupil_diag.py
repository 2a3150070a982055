"""Pupil-detector diagnostics: `python -m benchmarks.pupil_diag [--preset hard] [--seeds 7 3] [--sheet out.png]`.

Runs the default `PupilTracker` over the virtual eye's frames in order (as the pipeline does), prints the error
figures per seed and the CPU time per frame, and optionally saves a contact sheet of the worst frames with the
truth (green) and the detection (red) drawn, to see why they fail. `--meye` adds the MEYE figures of the
tuning subjects and of the held-out ones (the tracker per subject in file order, as the benchmark runs it).
Run from the repository root with `PYTHONPATH=TrackingBackend:.`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from app.camera.base import GrayImage
from app.camera.virtual_eye import EyeGroundTruth
from app.config.models import AlgorithmConfig
from app.tracking.pupil.tracker import PupilTracker
from app.tracking.results import PupilResult
from benchmarks._accuracy_sets import load_meye, synthetic_frames

Frame = tuple[float, GrayImage, EyeGroundTruth]


def run(frames: list[Frame]) -> tuple[list[PupilResult], list[float]]:
    tracker = PupilTracker(AlgorithmConfig())
    results, cpu_ms = [], []
    for _, gray, _ in frames:
        start = time.thread_time()
        results.append(tracker.detect(gray))
        cpu_ms.append((time.thread_time() - start) * 1e3)
    return results, cpu_ms


def errors_px(frames: list[Frame], results: list[PupilResult]) -> list[tuple[int, float]]:
    """(frame index, error) for the frames the benchmark scores (pupil at least 60 % visible)."""
    scored = []
    for index, ((_, _, truth), result) in enumerate(zip(frames, results, strict=True)):
        if truth.pupil_visible_fraction < 0.6:
            continue
        error = (
            float(np.hypot(result.x - truth.pupil_x, result.y - truth.pupil_y)) if result.confidence >= 0.5 else np.inf
        )
        scored.append((index, error))
    return scored


def contact_sheet(
    frames: list[Frame], results: list[PupilResult], picks: list[int], path: Path, zoom: int = 4, half_px: int = 40
) -> None:
    """Crops of 2 x `half_px` around the true pupil, enlarged `zoom` times; truth green, detection red."""
    tiles = []
    for index in picks:
        _, gray, truth = frames[index]
        result = results[index]
        padded = cv2.copyMakeBorder(gray, half_px, half_px, half_px, half_px, cv2.BORDER_CONSTANT, value=0)
        x0, y0 = round(truth.pupil_x), round(truth.pupil_y)
        crop = padded[y0 : y0 + 2 * half_px, x0 : x0 + 2 * half_px]
        tile = cv2.cvtColor(
            cv2.resize(crop, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST), cv2.COLOR_GRAY2BGR
        )

        def to_tile(x: float, y: float, x0: int = x0, y0: int = y0) -> tuple[float, float]:
            return ((x - x0 + half_px + 0.5) * zoom - 0.5, (y - y0 + half_px + 0.5) * zoom - 0.5)

        box = (
            to_tile(truth.pupil_x, truth.pupil_y),
            (truth.pupil_w * zoom, truth.pupil_h * zoom),
            truth.pupil_angle_deg,
        )
        cv2.ellipse(tile, box, (0, 255, 0), 1)
        if result.confidence > 0:
            found = (to_tile(result.x, result.y), (result.ellipse_w * zoom, result.ellipse_h * zoom), result.angle_deg)
            cv2.ellipse(tile, found, (0, 0, 255), 1)
        label = f"#{index} c{result.confidence:.2f} {result.algorithm} vis{truth.pupil_visible_fraction:.2f}"
        cv2.putText(tile, label, (3, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 255, 255), 1)
        tiles.append(tile)
    columns = 4
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)]
    cv2.imwrite(str(path), np.vstack(rows))


def meye(tuning: frozenset[int]) -> None:
    """The default tracker per MEYE subject in file order (as the pipeline runs it): tuning and held-out figures."""
    frames = load_meye()
    if not frames:
        print("MEYE: no data")
        return
    groups: dict[str, list[float]] = {"tuning": [], "held out": []}
    cpu_ms: list[float] = []
    tracker = PupilTracker(AlgorithmConfig())
    subject = -1
    for frame in frames:
        if frame.subject != subject:
            tracker, subject = PupilTracker(AlgorithmConfig()), frame.subject
        start = time.thread_time()
        result = tracker.detect(frame.gray)
        cpu_ms.append((time.thread_time() - start) * 1e3)
        if frame.centroid is None or frame.blink:
            continue
        found = result.confidence >= 0.5
        error = float(np.hypot(result.x - frame.centroid[0], result.y - frame.centroid[1])) if found else np.inf
        groups["tuning" if frame.subject in tuning else "held out"].append(error)
    for name, values in groups.items():
        errors = np.asarray(values)
        print(f"MEYE {name}: n={len(errors)} <=1px {np.mean(errors <= 1):.3f} <=2.5px {np.mean(errors <= 2.5):.3f}")
    errors = np.asarray(groups["tuning"] + groups["held out"])
    print(
        f"MEYE all: <=1px {np.mean(errors <= 1):.3f} <=2.5px {np.mean(errors <= 2.5):.3f}  "
        f"CPU median {np.median(cpu_ms):.2f} ms p95 {np.percentile(cpu_ms, 95):.2f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pupil_diag", description=__doc__)
    parser.add_argument("--preset", default="hard")
    parser.add_argument("--seeds", type=int, nargs="+", default=[7])
    parser.add_argument("--count", type=int, default=900)
    parser.add_argument("--sheet", type=Path, default=None)
    parser.add_argument("--worst", type=int, default=16)
    parser.add_argument("--meye", action="store_true", help="also the MEYE figures (tuning subjects 43, 49, 51, 53)")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    if args.meye:
        meye(frozenset({43, 49, 51, 53}))
    for seed in args.seeds:
        frames = list(synthetic_frames(args.preset, args.count, seed=seed))
        results, cpu_ms = run(frames)
        scored = errors_px(frames, results)
        errors = np.asarray([e for _, e in scored])
        print(
            f"{args.preset} seed {seed}: n={len(errors)} <=1px {np.mean(errors <= 1):.3f} "
            f"<=2px {np.mean(errors <= 2):.3f} "
            f"missing {np.mean(~np.isfinite(errors)):.3f} median {np.median(errors):.2f}px  "
            f"CPU median {np.median(cpu_ms):.2f} ms p95 {np.percentile(cpu_ms, 95):.2f} ms"
        )
        bins = [0, 1, 2, 3, 5, 10, 20, np.inf]
        counts = np.histogram(errors[np.isfinite(errors)], bins)[0]
        print(
            "  error histogram (px):", {f"{lo}-{hi}": int(c) for lo, hi, c in zip(bins, bins[1:], counts, strict=False)}
        )
        if args.sheet is not None:
            worst = [i for i, _ in sorted(scored, key=lambda s: -s[1])[: args.worst]]
            contact_sheet(frames, results, worst, args.sheet.with_name(f"{args.sheet.stem}_{seed}{args.sheet.suffix}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

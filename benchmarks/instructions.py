"""The tracking pipeline's cost in CPU instructions per frame: a figure a shared, noisy machine cannot move.

`python build.py bench instructions [--frames N] [--presets bench90,hard,clip:demo3] [--quick]`

CPU time per frame swings by 40 % from one run to the next on a shared VM, more than most optimisations gain.
Valgrind's callgrind counts the instructions executed instead, which is repeatable to about 0.1 % for the same
code and input whatever else the machine does. For each virtual-eye preset the pipeline runs in a child process
under callgrind twice: once over WARM_UP_FRAMES frames (start-up, imports, the per-user statistics settling) and
once over those plus N more; the difference over N is the steady per-frame count. It says nothing about cold
caches or waiting (the service's frames cost more than a back-to-back loop's): use it to compare two versions of
the code, and `bench accuracy` / `bench pipeline` for the time a user sees.

A preset `clip:NAME` runs the first frames of a real DIY eye clip from ../shared/data instead (a file name
prefix): real eyes take more refinements a frame than the virtual eye. The default list has `clip:demo3` when the
data is there. Clips are counted with OpenCV's AVX2 code paths off (valgrind cannot run one of them).

Needs `valgrind` on the PATH (Debian: apt-get install valgrind); skipped with a message otherwise. `--quick` runs
the child once without valgrind (a smoke test of the harness). Each preset takes about two minutes under valgrind.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

WARM_UP_FRAMES = 30
DEFAULT_FRAMES = 200
DEFAULT_PRESETS = ("bench90", "hard")
DEFAULT_CLIP = "clip:demo3"
SEED = 7
COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def preset_clip(preset: str) -> Path | None:
    """The clip a `clip:NAME` preset names; None when ../shared/data has no such clip."""
    from benchmarks._accuracy_sets import find_clip

    return find_clip(preset.removeprefix("clip:"))


def decode_clip(preset: str, count: int) -> list[npt.NDArray[np.uint8]]:
    """The first `count` frames of the preset's clip, grey. Decoded outside valgrind: OpenCV's video decoder
    uses instructions valgrind does not know."""
    from benchmarks._accuracy_sets import read_clip

    clip = preset_clip(preset)
    if clip is None:
        raise SystemExit(f"no eye clip for {preset}")
    return [gray for _, gray in read_clip(clip, count)]


def run_child(preset: str, frames: int) -> None:
    """The measured work: WARM_UP_FRAMES + `frames` frames of `preset` through a default pipeline."""
    import cv2

    from app.camera.virtual_eye import PRESETS, GazeScript, render_eye
    from app.config.models import TrackerConfig
    from app.tracking.pipeline import EyePipeline

    cv2.setNumThreads(1)
    # Rendering (or decoding) happens before the pipeline's frames in both runs, so it cancels out of the difference
    # as long as both make the same frames: always make the longer run's.
    total = WARM_UP_FRAMES + int(os.environ.get("ETVR_INSTRUCTIONS_RENDER", frames))
    if preset.startswith("clip:"):
        decoded = os.environ.get("ETVR_INSTRUCTIONS_FRAMES")
        grays = list(np.load(decoded)) if decoded else decode_clip(preset, total)
        fps = 60.0  # the clips' own rates differ; the pipeline only uses time for its filters and blinks
    else:
        script, rng = GazeScript(SEED), np.random.default_rng(SEED)
        fps = PRESETS[preset].fps
        grays = [render_eye(script.state_at(i / fps), PRESETS[preset], rng)[0] for i in range(total)]
    pipeline = EyePipeline(TrackerConfig())
    for index, gray in enumerate(grays[: WARM_UP_FRAMES + frames]):
        pipeline.process(gray, index / fps)


def callgrind_instructions(preset: str, frames: int, render: int) -> int:
    with tempfile.TemporaryDirectory() as folder:
        env = dict(os.environ, PYTHONHASHSEED="0", ETVR_INSTRUCTIONS_RENDER=str(render))
        if preset.startswith("clip:"):
            decoded = Path(folder) / "frames.npy"
            np.save(decoded, np.stack(decode_clip(preset, WARM_UP_FRAMES + render)))
            env["ETVR_INSTRUCTIONS_FRAMES"] = str(decoded)
            # Valgrind 3.19 does not know an instruction of OpenCV's AVX2 build of a filter that real eyes' lid
            # profiles reach (a VEX-encoded vmovq): its SSE/AVX code paths are counted instead, in every tree alike.
            env["OPENCV_CPU_DISABLE"] = "AVX2"
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={Path(folder) / 'callgrind.out'}",
            sys.executable,
            "-m",
            "benchmarks",
            "instructions",
            "--child",
            preset,
            str(frames),
        ]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        match = COLLECTED.search(done.stderr)
        if done.returncode != 0 or match is None:
            raise RuntimeError(f"callgrind run failed ({done.returncode}): {done.stderr[-2000:]}")
        return int(match.group(1))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench instructions", description=__doc__)
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="frames counted after the warm-up")
    parser.add_argument(
        "--presets", default=None, help="virtual-eye presets or clip:NAME, comma-separated (bench90,hard,clip:demo3)"
    )
    parser.add_argument("--quick", action="store_true", help="run the child once without valgrind (smoke test)")
    parser.add_argument("--child", nargs=2, metavar=("PRESET", "FRAMES"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(args.child[0], int(args.child[1]))
        return 0
    presets = [p for p in args.presets.split(",") if p] if args.presets else [*DEFAULT_PRESETS, DEFAULT_CLIP]
    for preset in [p for p in presets if p.startswith("clip:") and preset_clip(p) is None]:
        print(f"instructions: {preset} skipped (no such clip in ../shared/data)")
        presets.remove(preset)
    if args.quick:
        started = time.perf_counter()
        for preset in presets:
            run_child(preset, 3)
        print(f"instructions --quick: the child ran {', '.join(presets)} in {time.perf_counter() - started:.1f} s")
        return 0
    if shutil.which("valgrind") is None:
        print("instructions: skipped (valgrind is not on the PATH; Debian: apt-get install valgrind)")
        return 0
    print(f"tracking pipeline, instructions per frame (callgrind; {args.frames} frames after {WARM_UP_FRAMES})")
    for preset in presets:
        started = time.perf_counter()
        base = callgrind_instructions(preset, 0, args.frames)
        full = callgrind_instructions(preset, args.frames, args.frames)
        per_frame = (full - base) / args.frames
        print(
            f"  {preset:10s} {per_frame / 1e6:8.3f} M instructions/frame  "
            f"(runs {base:,} and {full:,}; {time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    return 0

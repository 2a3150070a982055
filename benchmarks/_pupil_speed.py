"""CPU time per frame of the default `PupilTracker` on a virtual-eye set (debug aid for pupil-detector work).

`PYTHONPATH=TrackingBackend:. python -m benchmarks._pupil_speed [preset] [seed] [count] [repeats]`: the median
over repeats of the per-run median CPU ms/frame (cv2 single-threaded, as in the worker).
"""

from __future__ import annotations

import sys
import time

import cv2
import numpy as np

from app.config.models import AlgorithmConfig
from app.tracking.pupil.tracker import PupilTracker
from benchmarks._accuracy_sets import synthetic_frames


def main() -> None:
    preset = sys.argv[1] if len(sys.argv) > 1 else "default"
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 600
    repeats = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    cv2.setNumThreads(1)
    frames = [gray for _, gray, _ in synthetic_frames(preset, count, seed)]
    medians = []
    for _ in range(repeats):
        tracker = PupilTracker(AlgorithmConfig())
        cpu_ms = []
        for gray in frames:
            start = time.thread_time()
            tracker.detect(gray)
            cpu_ms.append((time.thread_time() - start) * 1e3)
        medians.append(float(np.median(cpu_ms)))
    print(f"{preset} seed {seed}: CPU median {np.median(medians):.3f} ms/frame (runs {np.round(medians, 3).tolist()})")


if __name__ == "__main__":
    main()

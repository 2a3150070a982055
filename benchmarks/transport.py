"""Camera -> tracker frame transport: the shared-memory ring against a Manager queue, in one run.

`python build.py bench transport [--seconds S] [--fps F] [--quick]`. A writer process offers frames at
--fps (default 20,000/s, far above any camera); the reader (another process) takes the newest each
time, as the tracker does. Printed: frames/s delivered to the reader, latency from the writer's capture
timestamp to the reader holding the pixels (p50/p99), and the ring/Manager ratio. Targets (2-core
machine): >= 2,000 fps and p99 <= 1 ms for 240x240 gray, >= 10x the Manager queue.
"""

from __future__ import annotations

import argparse
import ctypes
import multiprocessing
import queue
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from app.runtime.frames import FrameReader, FrameWriter, SharedFrameStore
from benchmarks._stats import percentiles_ms, print_table

SPAWN = multiprocessing.get_context("spawn")
SHAPES: dict[str, tuple[int, ...]] = {"240x240 gray": (240, 240), "640x480 BGR": (480, 640, 3)}


def _paced(fps: float, stop: Any) -> Iterator[None]:
    """Yield at `fps` on the monotonic clock (busy-waiting: a benchmark owns its core)."""
    interval = 1.0 / fps
    next_at = time.monotonic()
    while not stop.value:
        while time.monotonic() < next_at:
            pass
        next_at += interval
        yield


def _ring_writer(
    store_name: str, slots: int, max_bytes: int, tx: Connection, shape: tuple[int, ...], fps: float, stop: Any
) -> None:
    store = SharedFrameStore(store_name, slots, max_bytes)
    writer = FrameWriter(store, tx)
    image = np.random.default_rng(0).integers(0, 255, size=shape, dtype=np.uint8)
    for _ in _paced(fps, stop):
        writer.write(image, time.monotonic())
    del writer
    store.close()


def _queue_writer(frames: Any, shape: tuple[int, ...], fps: float, stop: Any) -> None:
    image = np.random.default_rng(0).integers(0, 255, size=shape, dtype=np.uint8)
    for _ in _paced(fps, stop):
        try:
            frames.put((image, time.monotonic()), timeout=0.1)
        except queue.Full:
            continue


def measure_ring(shape: tuple[int, ...], fps: float, seconds: float) -> tuple[float, list[float]]:
    nbytes = int(np.prod(shape))
    store = SharedFrameStore(None, 4, nbytes, create=True)
    rx, tx = SPAWN.Pipe(duplex=False)
    stop = SPAWN.RawValue(ctypes.c_bool, False)
    writer = SPAWN.Process(target=_ring_writer, args=(store.name, 4, nbytes, tx, shape, fps, stop), daemon=True)
    writer.start()
    reader = FrameReader(store, rx)
    reader.read_newest(10.0)  # wait for the writer to run
    latencies: list[float] = []
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        got = reader.read_newest(1.0)
        if got is not None:
            latencies.append(time.monotonic() - got[0].capture_ts)
    elapsed = time.monotonic() - started
    stop.value = True
    writer.join(5)
    del reader
    store.close()
    return len(latencies) / elapsed, latencies


def measure_manager_queue(shape: tuple[int, ...], fps: float, seconds: float) -> tuple[float, list[float]]:
    with SPAWN.Manager() as manager:
        frames = manager.Queue(maxsize=4)
        stop = SPAWN.RawValue(ctypes.c_bool, False)
        writer = SPAWN.Process(target=_queue_writer, args=(frames, shape, fps, stop), daemon=True)
        writer.start()
        frames.get(timeout=10.0)
        latencies: list[float] = []
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            try:
                _, capture_ts = frames.get(timeout=1.0)
            except queue.Empty:
                continue
            latencies.append(time.monotonic() - capture_ts)
        elapsed = time.monotonic() - started
        stop.value = True
        writer.join(5)
    return len(latencies) / elapsed, latencies


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench transport", description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per case")
    parser.add_argument(
        "--fps", type=float, default=20000.0, help="rate the writer offers frames at (far above any camera)"
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run (0.3 s per case)")
    args = parser.parse_args(argv)
    seconds = 0.3 if args.quick else args.seconds
    rows = []
    for label, shape in SHAPES.items():
        ring_fps, ring_lat = measure_ring(shape, args.fps, seconds)
        queue_fps, queue_lat = measure_manager_queue(shape, args.fps, seconds)
        ring_p, queue_p = percentiles_ms(ring_lat), percentiles_ms(queue_lat)
        rows.append([label, "shared-memory ring", round(ring_fps), ring_p["p50"], ring_p["p99"], ""])
        ratio = ring_fps / queue_fps if queue_fps else float("inf")
        rows.append([label, "Manager().Queue()", round(queue_fps), queue_p["p50"], queue_p["p99"], f"{ratio:.1f}x"])
    print_table(["frames", "transport", "fps", "p50 ms", "p99 ms", "ring/queue"], rows)
    return 0

"""Camera -> tracker frame transport: the shared-memory ring against a Manager queue, in one run.

`python build.py bench transport [--seconds S] [--fps F] [--quick]`. A writer process offers frames at
--fps (default 20,000/s, far above any camera); the reader (another process) takes the newest each
time, as the tracker does. Printed: frames/s delivered to the reader, latency from the writer's capture
timestamp to the reader holding the pixels (p50/p99), the CPU it costs per delivered frame (writer,
reader and, for the queue, the manager process), and the ring/Manager ratios; once at a flood rate
(throughput) and once at a camera's rate (--camera-fps, cost). Targets (2-core
machine): >= 2,000 fps and p99 <= 1 ms for 240x240 gray, >= 10x the Manager queue.
"""

from __future__ import annotations

import argparse
import ctypes
import multiprocessing
import os
import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import psutil

from app.runtime.frames import FrameReader, FrameWriter, SharedFrameStore
from benchmarks._stats import percentiles_ms, print_table

SPAWN = multiprocessing.get_context("spawn")
SHAPES: dict[str, tuple[int, ...]] = {"240x240 gray": (240, 240), "640x480 BGR": (480, 640, 3)}


SPIN_BELOW_S = 0.0005  # sleep until this close to a frame's time, then spin (sleep is too coarse)


def _paced(fps: float, stop: Any) -> Iterator[None]:
    """Yield at `fps` on the monotonic clock, sleeping while there is time so CPU figures stay honest."""
    interval = 1.0 / fps
    next_at = time.monotonic()
    while not stop.value:
        remaining = next_at - time.monotonic()
        if remaining > SPIN_BELOW_S:
            time.sleep(remaining - SPIN_BELOW_S)
        while time.monotonic() < next_at:
            pass
        next_at = max(next_at + interval, time.monotonic() - interval)
        yield


@dataclass
class Measured:
    fps: float
    latencies: list[float]
    cpu_s: float  # writer + reader (+ manager) CPU seconds over the window

    def cpu_us_per_frame(self, elapsed_s: float) -> float:
        frames = self.fps * elapsed_s
        return self.cpu_s / frames * 1e6 if frames else float("nan")


def _cpu_s(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


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


def measure_ring(shape: tuple[int, ...], fps: float, seconds: float) -> Measured:
    nbytes = int(np.prod(shape))
    store = SharedFrameStore(None, 4, nbytes, create=True)
    rx, tx = SPAWN.Pipe(duplex=False)
    stop = SPAWN.RawValue(ctypes.c_bool, False)
    writer = SPAWN.Process(target=_ring_writer, args=(store.name, 4, nbytes, tx, shape, fps, stop), daemon=True)
    writer.start()
    reader = FrameReader(store, rx)
    reader.read_newest(10.0)  # wait for the writer to run
    assert writer.pid is not None
    pids = [writer.pid, os.getpid()]
    latencies: list[float] = []
    cpu_before = _cpu_s(pids)
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        got = reader.read_newest(1.0)
        if got is not None:
            latencies.append(time.monotonic() - got[0].capture_ts)
    elapsed = time.monotonic() - started
    cpu = _cpu_s(pids) - cpu_before
    stop.value = True
    writer.join(5)
    del reader
    store.close()
    return Measured(len(latencies) / elapsed, latencies, cpu)


def measure_manager_queue(shape: tuple[int, ...], fps: float, seconds: float) -> Measured:
    with SPAWN.Manager() as manager:
        frames = manager.Queue(maxsize=4)
        stop = SPAWN.RawValue(ctypes.c_bool, False)
        writer = SPAWN.Process(target=_queue_writer, args=(frames, shape, fps, stop), daemon=True)
        writer.start()
        frames.get(timeout=10.0)
        assert writer.pid is not None
        manager_pid = manager._process.pid  # type: ignore[attr-defined]
        pids = [writer.pid, os.getpid(), manager_pid]
        latencies: list[float] = []
        cpu_before = _cpu_s(pids)
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            try:
                _, capture_ts = frames.get(timeout=1.0)
            except queue.Empty:
                continue
            latencies.append(time.monotonic() - capture_ts)
        elapsed = time.monotonic() - started
        cpu = _cpu_s(pids) - cpu_before
        stop.value = True
        writer.join(5)
    return Measured(len(latencies) / elapsed, latencies, cpu)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench transport", description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per case")
    parser.add_argument("--fps", type=float, default=20000.0, help="offered rate of the throughput cases")
    parser.add_argument("--camera-fps", type=float, default=120.0, help="offered rate of the cost cases")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (0.3 s per case)")
    args = parser.parse_args(argv)
    seconds = 0.3 if args.quick else args.seconds
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    for title, rate in (("throughput", args.fps), ("cost at a camera's rate", args.camera_fps)):
        print(f"\n{title}: writer offers {rate:.0f} frames/s, {seconds:.1f} s per case")
        rows = []
        for label, shape in SHAPES.items():
            ring = measure_ring(shape, rate, seconds)
            manager = measure_manager_queue(shape, rate, seconds)
            ring_p, queue_p = percentiles_ms(ring.latencies), percentiles_ms(manager.latencies)
            ring_cost, queue_cost = ring.cpu_us_per_frame(seconds), manager.cpu_us_per_frame(seconds)
            rows.append(
                [label, "shared-memory ring", round(ring.fps), ring_p["p50"], ring_p["p99"], round(ring_cost, 1), ""]
            )
            fps_ratio = ring.fps / manager.fps if manager.fps else float("inf")
            rows.append(
                [
                    label,
                    "Manager().Queue()",
                    round(manager.fps),
                    queue_p["p50"],
                    queue_p["p99"],
                    round(queue_cost, 1),
                    f"fps {fps_ratio:.1f}x, CPU {queue_cost / ring_cost:.1f}x",
                ]
            )
        print_table(["frames", "transport", "fps", "p50 ms", "p99 ms", "CPU µs/frame", "ring vs queue"], rows)
    return 0

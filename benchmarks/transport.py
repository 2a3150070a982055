"""Camera -> tracker frame transport: the shared-memory ring against a Manager queue, in one run.

`python build.py bench transport [--seconds S] [--fps F] [--camera-fps F] [--quick]`. A writer process
sends frames and the reader (another process) takes the newest each time, as the tracker does. Two cases:
- throughput: the writer is unpaced (as fast as it can; --fps paces it instead) for both transports;
  frames/s delivered to the reader, the writer's offered rate, latency from the writer's capture timestamp
  to the reader holding the pixels (p50/p99) and torn frames (ring only);
- cost at a camera's rate (--camera-fps, default 120): the writer sleeps between frames (no spinning).
CPU per delivered frame = the writer's CPU inside write/put (thread time, so its pacing is left out) + the
whole reader process (its waiting for frames is part of the transport) + the manager process for the queue.
A bare pipe message at the camera's rate is measured too: the wake-up floor any blocking transport pays.
Ratios ring vs queue are printed for fps, p99 and CPU. Targets (2-core machine), checked and printed:
>= 2,000 fps and p99 <= 1 ms for 240x240 gray, >= 10x the Manager queue's fps.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import multiprocessing
import os
import queue
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from app.runtime.frames import FrameReader, FrameWriter, SharedFrameStore
from benchmarks._stats import percentiles_ms, print_table

SPAWN = multiprocessing.get_context("spawn")
SHAPES: dict[str, tuple[int, ...]] = {"240x240 gray": (240, 240), "640x480 BGR": (480, 640, 3)}
GATE_SHAPE = "240x240 gray"
TARGET_FPS = 2000.0
TARGET_P99_MS = 1.0
TARGET_FPS_RATIO = 10.0
RING_SLOTS = 4
UNPACED = 0.0


def _paced(fps: float, stop: Any) -> Iterator[None]:
    """Yield at `fps` on the monotonic clock by sleeping only (fps 0 = unpaced), so CPU figures are the
    transport's, not a spin loop's. A late frame does not make the next ones come in a burst."""
    interval = 1.0 / fps if fps > 0 else 0.0
    next_at = time.monotonic()
    while not stop.value:
        if interval:
            remaining = next_at - time.monotonic()
            if remaining > 0:
                time.sleep(remaining)
            next_at = max(next_at + interval, time.monotonic() - interval)
        yield


@dataclass
class Measured:
    delivered: int
    offered: int  # frames the writer sent during the window
    elapsed_s: float
    latencies_s: list[float]
    cpu_s: float  # writer's sending + reader (+ manager) CPU seconds over the window
    torn: int = 0

    @property
    def fps(self) -> float:
        return self.delivered / self.elapsed_s

    @property
    def offered_fps(self) -> float:
        return self.offered / self.elapsed_s

    @property
    def cpu_us_per_frame(self) -> float:
        return self.cpu_s / self.delivered * 1e6 if self.delivered else float("nan")

    @property
    def p99_ms(self) -> float:
        return percentiles_ms(self.latencies_s)["p99"]


def _cpu_s(pids: list[int]) -> float:
    """CPU seconds used so far by `pids` (all their threads): nanoseconds from Linux schedstat, where the
    clock-tick figures (10 ms) would be too coarse for a few hundred frames; psutil elsewhere."""
    total = 0.0
    for pid in pids:
        tasks = Path(f"/proc/{pid}/task")
        if tasks.is_dir():
            for task in tasks.iterdir():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    total += int((task / "schedstat").read_text().split()[0]) / 1e9
        else:
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


def _ring_writer(
    store_name: str,
    max_bytes: int,
    tx: Connection,
    shape: tuple[int, ...],
    fps: float,
    stop: Any,
    sent: Any,
    send_cpu: Any,
) -> None:
    store = SharedFrameStore(store_name, RING_SLOTS, max_bytes)
    writer = FrameWriter(store, tx)
    image = np.random.default_rng(0).integers(0, 255, size=shape, dtype=np.uint8)
    for _ in _paced(fps, stop):
        cpu_before = time.thread_time()
        sequence = writer.write(image, time.monotonic())
        send_cpu.value += time.thread_time() - cpu_before
        sent.value = sequence
    del writer
    store.close()


def _queue_writer(frames: Any, shape: tuple[int, ...], fps: float, stop: Any, sent: Any, send_cpu: Any) -> None:
    image = np.random.default_rng(0).integers(0, 255, size=shape, dtype=np.uint8)
    for _ in _paced(fps, stop):
        cpu_before = time.thread_time()
        try:
            frames.put((image, time.monotonic()), timeout=0.1)
        except queue.Full:
            continue
        finally:
            send_cpu.value += time.thread_time() - cpu_before
        sent.value += 1


def measure_ring(shape: tuple[int, ...], fps: float, seconds: float) -> Measured:
    nbytes = int(np.prod(shape))
    store = SharedFrameStore(None, RING_SLOTS, nbytes, create=True)
    rx, tx = SPAWN.Pipe(duplex=False)
    stop = SPAWN.RawValue(ctypes.c_bool, False)
    sent = SPAWN.RawValue(ctypes.c_long, 0)
    send_cpu = SPAWN.RawValue(ctypes.c_double, 0.0)
    args = (store.name, nbytes, tx, shape, fps, stop, sent, send_cpu)
    writer = SPAWN.Process(target=_ring_writer, args=args, daemon=True)
    writer.start()
    try:
        reader = FrameReader(store, rx)
        reader.read_newest(10.0)  # wait for the writer to run
        pids = [os.getpid()]
        latencies: list[float] = []
        torn_before, sent_before = reader.torn, sent.value
        cpu_before = _cpu_s(pids) + send_cpu.value
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            got = reader.read_newest(1.0)
            if got is not None:
                latencies.append(time.monotonic() - got[0].capture_ts)
        elapsed = time.monotonic() - started
        cpu = _cpu_s(pids) + send_cpu.value - cpu_before
        offered = sent.value - sent_before
        torn = reader.torn - torn_before
    finally:
        stop.value = True
        writer.join(5)
    del reader
    store.close()
    return Measured(len(latencies), offered, elapsed, latencies, cpu, torn)


def measure_manager_queue(shape: tuple[int, ...], fps: float, seconds: float) -> Measured:
    with SPAWN.Manager() as manager:
        frames = manager.Queue(maxsize=RING_SLOTS)
        stop = SPAWN.RawValue(ctypes.c_bool, False)
        sent = SPAWN.RawValue(ctypes.c_long, 0)
        send_cpu = SPAWN.RawValue(ctypes.c_double, 0.0)
        writer = SPAWN.Process(target=_queue_writer, args=(frames, shape, fps, stop, sent, send_cpu), daemon=True)
        writer.start()
        try:
            frames.get(timeout=10.0)
            manager_pid = manager._process.pid  # type: ignore[attr-defined]
            pids = [os.getpid(), manager_pid]
            latencies: list[float] = []
            sent_before = sent.value
            cpu_before = _cpu_s(pids) + send_cpu.value
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                try:
                    _, capture_ts = frames.get(timeout=1.0)
                except queue.Empty:
                    continue
                latencies.append(time.monotonic() - capture_ts)
            elapsed = time.monotonic() - started
            cpu = _cpu_s(pids) + send_cpu.value - cpu_before
            offered = sent.value - sent_before
        finally:
            stop.value = True
            writer.join(5)
    return Measured(len(latencies), offered, elapsed, latencies, cpu)


def _bare_pipe_writer(tx: Connection, fps: float, stop: Any, send_cpu: Any) -> None:
    padding = bytes(24)
    for _ in _paced(fps, stop):
        cpu_before = time.thread_time()
        tx.send_bytes(struct.pack("<d", time.monotonic()) + padding)
        send_cpu.value += time.thread_time() - cpu_before


def measure_wakeup_floor(fps: float, seconds: float) -> tuple[float, float]:
    """CPU µs per frame and p99 latency (ms) of a bare 32-byte pipe message at `fps` (the sender's send +
    the receiver's wake-up): what any transport that blocks between frames pays, on this machine now."""
    rx, tx = SPAWN.Pipe(duplex=False)
    stop = SPAWN.RawValue(ctypes.c_bool, False)
    send_cpu = SPAWN.RawValue(ctypes.c_double, 0.0)
    writer = SPAWN.Process(target=_bare_pipe_writer, args=(tx, fps, stop, send_cpu), daemon=True)
    writer.start()
    try:
        if rx.poll(10.0):
            rx.recv_bytes()
        latencies: list[float] = []
        cpu_before = _cpu_s([os.getpid()]) + send_cpu.value
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            if rx.poll(1.0):
                sent_at = struct.unpack_from("<d", rx.recv_bytes())[0]
                latencies.append(time.monotonic() - sent_at)
        cpu = _cpu_s([os.getpid()]) + send_cpu.value - cpu_before
    finally:
        stop.value = True
        writer.join(5)
    cpu_us = cpu / len(latencies) * 1e6 if latencies else float("nan")
    return cpu_us, percentiles_ms(latencies)["p99"]


def _ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.1f}x" if denominator > 0 else "inf"


def _rows(label: str, ring: Measured, manager: Measured) -> list[list[object]]:
    rows: list[list[object]] = []
    for name, m, torn in (("shared-memory ring", ring, str(ring.torn)), ("Manager().Queue()", manager, "")):
        p = percentiles_ms(m.latencies_s)
        rows.append(
            [label, name, round(m.offered_fps), round(m.fps), p["p50"], p["p99"], round(m.cpu_us_per_frame, 1), torn]
        )
    return rows


def _print_ratios(results: dict[str, tuple[Measured, Measured]]) -> None:
    for label, (ring, manager) in results.items():
        print(
            f"  {label}: ring vs queue  fps {_ratio(ring.fps, manager.fps)} higher,"
            f" p99 {_ratio(manager.p99_ms, ring.p99_ms)} lower,"
            f" CPU/frame {_ratio(manager.cpu_us_per_frame, ring.cpu_us_per_frame)} lower"
        )


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench transport", description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per case")
    parser.add_argument(
        "--fps", type=float, default=UNPACED, help="offered rate of the throughput cases (default 0: unpaced)"
    )
    parser.add_argument("--camera-fps", type=float, default=120.0, help="offered rate of the cost cases")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (0.3 s per case)")
    args = parser.parse_args(argv)
    seconds = 0.3 if args.quick else args.seconds
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    headers = ["frames", "transport", "offered fps", "fps", "p50 ms", "p99 ms", "CPU µs/frame", "torn"]
    cases: dict[str, dict[str, tuple[Measured, Measured]]] = {}
    for case, rate in (("throughput", args.fps), ("camera rate", args.camera_fps)):
        pacing = "unpaced (as fast as it can)" if rate == UNPACED else f"paced at {rate:.0f} frames/s (sleeping)"
        print(f"\n{case}: writer {pacing}, {seconds:.1f} s per case")
        results: dict[str, tuple[Measured, Measured]] = {}
        rows: list[list[object]] = []
        for label, shape in SHAPES.items():
            results[label] = (measure_ring(shape, rate, seconds), measure_manager_queue(shape, rate, seconds))
            rows += _rows(label, *results[label])
        print_table(headers, rows)
        _print_ratios(results)
        if rate != UNPACED:
            floor_us, floor_p99_ms = measure_wakeup_floor(rate, seconds)
            print(
                f"  floor: a bare 32-byte pipe message at this rate costs {floor_us:.1f} µs/frame (send + wake-up),"
                f" p99 latency {floor_p99_ms:.3f} ms"
            )
        cases[case] = results
    ring_flood, queue_flood = cases["throughput"][GATE_SHAPE]
    flood_label = "unpaced" if args.fps == UNPACED else f"{args.fps:.0f} fps offered"
    ring_paced, _ = cases["camera rate"][GATE_SHAPE]
    checks = [
        (
            f"{GATE_SHAPE} ring fps >= {TARGET_FPS:.0f} ({flood_label})",
            f"{ring_flood.fps:.0f}",
            ring_flood.fps >= TARGET_FPS,
        ),
        (
            f"{GATE_SHAPE} ring p99 <= {TARGET_P99_MS:g} ms ({flood_label})",
            f"{ring_flood.p99_ms:.3f} ms",
            ring_flood.p99_ms <= TARGET_P99_MS,
        ),
        (
            f"{GATE_SHAPE} ring p99 <= {TARGET_P99_MS:g} ms (camera rate)",
            f"{ring_paced.p99_ms:.3f} ms",
            ring_paced.p99_ms <= TARGET_P99_MS,
        ),
        (
            f"{GATE_SHAPE} ring fps >= {TARGET_FPS_RATIO:g}x the Manager queue ({flood_label})",
            _ratio(ring_flood.fps, queue_flood.fps),
            ring_flood.fps >= TARGET_FPS_RATIO * queue_flood.fps,
        ),
    ]
    print("\ntargets")
    for name, value, ok in checks:
        print(f"  {name}: {value} -> {_verdict(ok)}")
    return 0

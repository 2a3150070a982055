"""Figures of the pipeline benchmark: flow and latency from the OSC receiver's records, step responses,
CPU and memory of the service's process tree, and the latency histograms as one PNG."""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import psutil

from benchmarks._pipeline_feeds import BenchRecord

FloatArray = npt.NDArray[np.float64]


def latency_summary_ms(latencies_ms: Sequence[float]) -> dict[str, float]:
    if not latencies_ms:
        nan = float("nan")
        return {"p50": nan, "p95": nan, "p99": nan, "max": nan, "mean": nan}
    values = np.asarray(latencies_ms, dtype=np.float64)
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "max": float(values.max()),
        "mean": float(values.mean()),
    }


def _frames_offered(sequences: Sequence[int]) -> int:
    """Camera frames behind a run of sequences (a restarted camera starts counting again)."""
    offered = 0
    segment_start = previous = sequences[0]
    for seq in sequences[1:]:
        if seq < previous:
            offered += previous - segment_start + 1
            segment_start = seq
        previous = seq
    return offered + previous - segment_start + 1


def flow_by_eye(records: Sequence[BenchRecord], window_s: float) -> dict[str, dict[str, float]]:
    """Per eye (`<target>:<position>`): camera frames in, OSC updates out, their ratio, per second."""
    by_eye: dict[str, list[BenchRecord]] = defaultdict(list)
    for record in records:
        by_eye[f"{record.target}:{record.position}"].append(record)
    flows = {}
    for eye, eye_records in sorted(by_eye.items()):
        sequences = [r.sequence for r in sorted(eye_records, key=lambda r: r.sent_ts)]
        updates = len(set(sequences))
        offered = _frames_offered(sequences)
        flows[eye] = {
            "camera_fps_in": offered / window_s,
            "osc_updates_per_s": updates / window_s,
            "out_in_ratio": updates / offered if offered else 0.0,
            "updates": float(updates),
            "frames_in": float(offered),
        }
    return flows


def latencies_ms(records: Sequence[BenchRecord]) -> list[float]:
    return [(r.sent_ts - r.capture_ts) * 1000.0 for r in records]


def latency_split_ms(records: Sequence[BenchRecord]) -> dict[str, dict[str, float]]:
    """The latency in two legs: capture -> the tracker's result ready (camera, frame ring, tracker), and
    result ready -> the update's last datagram sent (result pipe, OSC process)."""
    return {
        "to_result": latency_summary_ms([(r.processed_ts - r.capture_ts) * 1000.0 for r in records]),
        "result_to_sent": latency_summary_ms([(r.sent_ts - r.processed_ts) * 1000.0 for r in records]),
    }


# -- step response -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepResponse:
    jump_capture_ts: float  # capture time of the first frame showing the new gaze
    jump_instant_ts: float  # when the source's gaze jumped (NaN when unknown)
    half_ms: float  # jump frame's capture -> the OSC x crossing halfway
    half_from_jump_ms: float  # the source's jump -> the OSC x crossing halfway (adds camera sampling)
    settle90_ms: float  # jump frame's capture -> the OSC x reaching 90 % of the step
    x_before: float
    x_after: float


def _median_between(times: FloatArray, values: FloatArray, start: float, end: float) -> float:
    chosen = values[(times >= start) & (times < end)]
    chosen = chosen[np.isfinite(chosen)]
    return float(np.median(chosen)) if chosen.size else math.nan


def step_responses(records: Sequence[BenchRecord], opened_at: float | None, half_period_s: float) -> list[StepResponse]:
    """Each gaze jump of the `step` virtual eye, found from the raw pupil x, and how fast OSC x followed."""
    ordered = sorted(records, key=lambda r: r.sequence)
    capture = np.array([r.capture_ts for r in ordered])
    sent = np.array([r.sent_ts for r in ordered])
    pupil = np.array([r.pupil_x for r in ordered])
    osc_x = np.array([r.osc_x for r in ordered])
    found = np.isfinite(pupil)
    if found.sum() < 10:
        return []
    low, high = np.percentile(pupil[found], [10, 90])
    middle = (low + high) / 2.0
    side = np.where(found, np.sign(pupil - middle), 0.0)
    responses = []
    previous_side = 0.0
    for index in range(len(ordered)):
        if side[index] == 0.0:
            continue
        jumped = previous_side != 0.0 and side[index] != previous_side
        previous_side = side[index]
        if not jumped:
            continue
        jump_ts = capture[index]
        settle_start, settle_end = jump_ts + 0.6 * half_period_s, jump_ts + 0.9 * half_period_s
        if capture[-1] < settle_end or capture[0] > jump_ts - 0.3:
            continue  # not enough before or after this jump to know both levels
        before = _median_between(capture, osc_x, jump_ts - 0.3, jump_ts - 0.02)
        after = _median_between(capture, osc_x, settle_start, settle_end)
        if not (math.isfinite(before) and math.isfinite(after)) or abs(after - before) < 0.05:
            continue
        half = (before + after) / 2.0
        ninety = before + 0.9 * (after - before)
        direction = math.copysign(1.0, after - before)
        later = np.arange(index, len(ordered))
        crossed = later[(osc_x[later] - half) * direction > 0]
        settled = later[(osc_x[later] - ninety) * direction >= 0]
        if crossed.size == 0:
            continue
        instant = math.nan
        if opened_at is not None:
            instant = opened_at + round((jump_ts - opened_at) / half_period_s) * half_period_s
        half_sent = sent[crossed[0]]
        responses.append(
            StepResponse(
                jump_capture_ts=float(jump_ts),
                jump_instant_ts=instant,
                half_ms=float(half_sent - jump_ts) * 1000.0,
                half_from_jump_ms=float(half_sent - instant) * 1000.0,
                settle90_ms=float(sent[settled[0]] - jump_ts) * 1000.0 if settled.size else math.nan,
                x_before=before,
                x_after=after,
            )
        )
    return responses


# -- CPU and memory ------------------------------------------------------------------------------------------


def run_queue_wait_s(pid: int) -> float | None:
    """Seconds the process's threads have spent runnable but waiting for a CPU (Linux schedstat; None
    elsewhere). On a busy machine this, not the pipeline's own work, makes the latency tail."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    waited_ns = 0
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as schedstat:
                waited_ns += int(schedstat.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return waited_ns / 1e9


class ProcessTreeSampler:
    """CPU time, run-queue wait and memory of labelled processes between `start()` and `stop()`."""

    def __init__(self, labelled_pids: dict[int, str]) -> None:
        self._processes: dict[int, tuple[str, psutil.Process]] = {}
        for pid, label in labelled_pids.items():
            try:
                self._processes[pid] = (label, psutil.Process(pid))
            except psutil.NoSuchProcess:
                continue
        self._cpu_start: dict[int, float] = {}
        self._wait_start: dict[int, float | None] = {}
        self._wall_start = 0.0

    def start(self, now: float) -> None:
        self._wall_start = now
        for pid, (_, process) in list(self._processes.items()):
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                del self._processes[pid]
                continue
            self._cpu_start[pid] = times.user + times.system
            self._wait_start[pid] = run_queue_wait_s(pid)

    def stop(self, now: float, with_pss: bool = True) -> dict[str, Any]:
        """Per label: CPU % of one core over the window, run-queue wait in % of the window (Linux), RSS (and
        PSS) MB; plus totals."""
        wall_s = max(1e-9, now - self._wall_start)
        per_process: dict[str, dict[str, float]] = {}
        for pid, (label, process) in self._processes.items():
            try:
                times = process.cpu_times()
                memory = process.memory_full_info() if with_pss else process.memory_info()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            cpu_s = times.user + times.system - self._cpu_start.get(pid, times.user + times.system)
            entry = {"pid": float(pid), "cpu_pct": 100.0 * cpu_s / wall_s, "rss_mb": memory.rss / 1e6}
            pss = getattr(memory, "pss", None)
            if pss is not None:
                entry["pss_mb"] = pss / 1e6
            waited_before, waited_now = self._wait_start.get(pid), run_queue_wait_s(pid)
            if waited_before is not None and waited_now is not None:
                entry["runq_wait_pct"] = 100.0 * (waited_now - waited_before) / wall_s
            per_process[label] = entry
        totals = {
            "cpu_pct": sum(p["cpu_pct"] for p in per_process.values()),
            "rss_mb": sum(p["rss_mb"] for p in per_process.values()),
        }
        if per_process and all("pss_mb" in p for p in per_process.values()):
            totals["pss_mb"] = sum(p["pss_mb"] for p in per_process.values())
        return {"processes": per_process, "total": totals, "window_s": wall_s}


def cpu_by_kind(processes: dict[str, dict[str, float]], key: str = "cpu_pct") -> dict[str, float]:
    """CPU % (or another per-process figure) summed by process kind (the last part of a label such as
    `A:LEFT_EYE:tracker`)."""
    sums: dict[str, float] = defaultdict(float)
    for label, entry in processes.items():
        if key in entry:
            sums[label.rsplit(":", 1)[-1]] += entry[key]
    return dict(sums)


# -- histogram image -----------------------------------------------------------------------------------------

PANEL_W, PANEL_H, PANEL_COLUMNS, BINS = 360, 170, 4, 40


def write_latency_histograms(path: Path, cases: Sequence[tuple[str, Sequence[float]]]) -> Path:
    """One panel per case: latency histogram (ms), with p50/p95/p99 marked; written as a PNG."""
    import cv2

    rows = max(1, math.ceil(len(cases) / PANEL_COLUMNS))
    columns = min(PANEL_COLUMNS, max(1, len(cases)))
    image = np.full((rows * PANEL_H, columns * PANEL_W, 3), 255, dtype=np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for number, (label, values_ms) in enumerate(cases):
        top, left = (number // PANEL_COLUMNS) * PANEL_H, (number % PANEL_COLUMNS) * PANEL_W
        cv2.putText(image, label[:48], (left + 6, top + 14), font, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
        if not values_ms:
            continue
        values = np.asarray(values_ms)
        stats = latency_summary_ms(list(values))
        upper = max(1.0, float(np.percentile(values, 99.5)) * 1.2)
        counts, _ = np.histogram(np.clip(values, 0, upper), bins=BINS, range=(0.0, upper))
        plot_x0, plot_x1, plot_y0, plot_y1 = left + 30, left + PANEL_W - 10, top + 30, top + PANEL_H - 28
        scale = (plot_y1 - plot_y0) / max(1, counts.max())
        bar_w = (plot_x1 - plot_x0) / BINS
        for bin_index, count in enumerate(counts):
            x0 = int(plot_x0 + bin_index * bar_w)
            cv2.rectangle(image, (x0, int(plot_y1 - count * scale)), (int(x0 + bar_w) - 1, plot_y1), (180, 120, 40), -1)
        for name, colour in (("p50", (0, 160, 0)), ("p95", (0, 140, 255)), ("p99", (0, 0, 220))):
            x = int(plot_x0 + stats[name] / upper * (plot_x1 - plot_x0))
            cv2.line(image, (x, plot_y0), (x, plot_y1), colour, 1)
        cv2.line(image, (plot_x0, plot_y1), (plot_x1, plot_y1), (0, 0, 0), 1)
        for fraction in (0.0, 0.5, 1.0):
            x = int(plot_x0 + fraction * (plot_x1 - plot_x0))
            cv2.putText(image, f"{fraction * upper:.1f}", (x - 8, plot_y1 + 12), font, 0.32, (0, 0, 0), 1)
        summary = f"ms  p50 {stats['p50']:.2f}  p95 {stats['p95']:.2f}  p99 {stats['p99']:.2f}  n={len(values)}"
        cv2.putText(image, summary, (left + 6, top + PANEL_H - 6), font, 0.34, (0, 0, 0), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)
    return path

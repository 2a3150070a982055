"""OSC output cost: encoding per message (per mode), and the OSC processes' CPU at 2 trackers x 90 fps.

`python build.py bench osc [--quick] [--json PATH] [--seconds S] [--repeat N]`

1. Encoding: compose + encode one update for both eye processes (`TargetEncoder`), per mode:
   messages per update, µs per message, messages/s one core could encode.
2. Processes: two real OSC processes (`run_osc_loop`, spawned like the service spawns them), fed like the
   tracker processes feed them (a pipe each and the shared result board) at 90 results/s per eye,
   sending over UDP to local sinks. CPU of the two processes (user + system, from psutil) as % of one
   core, for one target (v1) and for three targets (v1 + module + babble), and CPU µs per message sent.
   Targets (issues #5 and #11, "OSC process CPU"): each OSC process <= 2 % of one core with one target,
   <= 3 % with three; the two processes' sum is printed beside them, with the floor below.
   Each case also runs as a "floor": processes that make the same wake-ups and send the same datagrams
   (encoded once up front) with no Python work, to tell the OS's share of the figure from ours.
   CPU comes from the scheduler's per-thread nanosecond counters where Linux has them; the two cases
   run interleaved `--repeat` times (default 3) and medians are reported.
3. One update's Python work timed back to back and after a frame interval asleep: the gap is the cost of
   caches gone cold between results, most of the processes' figure on a virtual machine.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil

from app.config.models import OscConfig, TrackerPosition
from app.osc.compose import EyeSample, build_frame, eye_values, frame_of
from app.osc.modes import resolve_targets
from app.osc.output import TargetEncoder
from app.runtime.results import ResultBoard, ResultRecord, pack_result
from app.runtime.worker import SPAWN, new_stop_flag

LEFT, RIGHT = TrackerPosition.LEFT_EYE, TrackerPosition.RIGHT_EYE
SLOTS = {LEFT: 0, RIGHT: 1}
FPS = 90.0
MODES = ("v1", "v2", "native", "module", "babble")
THREE_TARGETS = ["v1", "module", "babble"]
TARGET_CPU_ONE_PCT = 2.0
TARGET_CPU_THREE_PCT = 3.0
WARMUP_S = 0.5


@dataclass
class EncodeFigures:
    mode: str
    messages_per_update: float  # both eye processes together
    us_per_message: float
    messages_per_s: float


@dataclass
class ProcessFigures:
    case: str
    targets: int
    seconds: float
    updates_per_s: float  # results fed, both eyes
    messages_per_s: float  # datagrams received by the sinks, all targets
    cpu_pct_left: float
    cpu_pct_right: float
    cpu_pct_total: float
    cpu_us_per_message: float
    target_pct: float

    @property
    def cpu_pct_per_process(self) -> float:
        """The busier of the two OSC processes: what the issues' "OSC process CPU" target is checked on."""
        return max(self.cpu_pct_left, self.cpu_pct_right)

    @property
    def met(self) -> bool:
        return self.cpu_pct_per_process <= self.target_pct


def _record(i: int, now: float) -> ResultRecord:
    # Moving values, with a blink now and then, like a real eye.
    phase = (i % 180) / 180.0
    openness = 0.0 if i % 300 < 6 else 0.9
    return ResultRecord(
        sequence=float(i),
        capture_ts=now,
        processed_ts=now,
        gaze_x=phase * 2 - 1,
        gaze_y=0.5 - phase,
        openness=openness,
        dilation=0.4,
        widen=0.1,
        squeeze=0.0,
    )


def bench_cold_update(updates: int, idle_s: float = 1.0 / FPS) -> tuple[float, float]:
    """CPU µs of one update's Python work (read the record, read the other eye from the board, combine,
    encode one v1 target), medians back to back and after `idle_s` asleep, as an OSC process runs it. The
    gap is what sleeping between results costs in caches: the processes' figure is mostly that."""
    from app.runtime.osc_process import EYE_VALUES_AT, FRAME_HEADER, RECORD_VALUES, BoardEyeReader

    board = ResultBoard()
    record = _record(10, time.monotonic())
    board.post(SLOTS[RIGHT], record)
    other = BoardEyeReader(board, SLOTS[RIGHT])
    packed = pack_result(record)
    data = FRAME_HEADER.pack(len(packed)) + packed
    encoder = TargetEncoder(resolve_targets(OscConfig.model_validate({"outputs": [{"mode": "v1"}]}))[0])
    sent: list[bytes] = []

    def update() -> None:
        own, theirs = RECORD_VALUES.unpack_from(data, FRAME_HEADER.size), other.read()
        assert theirs is not None
        frame = frame_of(eye_values(*own[EYE_VALUES_AT:]), eye_values(*theirs[EYE_VALUES_AT:]), False, False)
        assert frame is not None
        sent.clear()
        encoder.emit(frame, LEFT, sent.append, _raise)

    medians = []
    for pause_s in (0.0, idle_s):
        costs = []
        for _ in range(updates):
            if pause_s:
                time.sleep(pause_s)
            start = time.thread_time_ns()
            update()
            costs.append(time.thread_time_ns() - start)
        medians.append(statistics.median(costs) / 1e3)
    return medians[0], medians[1]


def _raise(exc: OSError) -> None:
    raise exc


def bench_encoding(updates: int) -> list[EncodeFigures]:
    figures = []
    for mode in MODES:
        plan = resolve_targets(OscConfig.model_validate({"outputs": [{"mode": mode}]}))[0]
        left_encoder, right_encoder = TargetEncoder(plan), TargetEncoder(plan)
        messages = 0
        start = time.perf_counter()
        for i in range(updates):
            eyes = [EyeSample(LEFT, _record(i, 0.0)), EyeSample(RIGHT, _record(i + 7, 0.0))]
            frame = build_frame(eyes, False, False)
            assert frame is not None
            messages += len(left_encoder.datagrams(frame, LEFT)) + len(right_encoder.datagrams(frame, RIGHT))
        elapsed = time.perf_counter() - start
        figures.append(EncodeFigures(mode, messages / updates, elapsed / messages * 1e6, messages / elapsed))
    return figures


def _osc_child(config_json: str, rx: Connection, position: str, board_shared: Any, stop_flag: Any, ready: Any) -> None:
    """An OSC process as the service runs it (minus logging and the config watcher)."""
    from app.osc.sender import OscOutputs
    from app.runtime.osc_process import OscSettings, run_osc_loop
    from app.runtime.worker_host import StatusPublisher, settle_heap

    settle_heap()  # as host_worker does before a worker's loop
    ready.set()

    own = TrackerPosition(position)
    others = {p: s for p, s in SLOTS.items() if p != own}
    outputs = OscOutputs()
    settings = OscSettings(OscConfig.model_validate_json(config_json))
    status = StatusPublisher({}, position)
    try:
        run_osc_loop(
            settings, rx, own, others, ResultBoard(board_shared), outputs, lambda: bool(stop_flag.value), status
        )
    finally:
        outputs.close()


def _floor_child(
    config_json: str, rx: Connection, position: str, board_shared: Any, stop_flag: Any, ready: Any
) -> None:
    """The OS's share of an OSC process: the same wake-ups and the same datagrams (this eye's share of an
    open-eye update, encoded once up front) to the same targets, with no Python work in between."""
    import os
    import select

    plans = resolve_targets(OscConfig.model_validate_json(config_json))
    own = TrackerPosition(position)
    eyes = [EyeSample(LEFT, _record(10, 0.0)), EyeSample(RIGHT, _record(17, 0.0))]
    frame = build_frame(eyes, False, False)
    assert frame is not None and not frame.left.closed and not frame.right.closed
    sends = []
    for plan in plans:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect((plan.host, plan.port))
        sends += [(sock.send, datagram) for datagram in TargetEncoder(plan).datagrams(frame, own)]
    fd = rx.fileno()
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    ready.set()
    while not stop_flag.value:
        if poller.poll(100) and os.read(fd, 65536):
            for send, datagram in sends:
                send(datagram)


class _Sinks:
    """UDP sockets that count what arrives (drained in a thread of this process)."""

    def __init__(self, count: int) -> None:
        self.socks = []
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(0.05)
            self.socks.append(sock)
        self.counts = [0] * count
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._drain, args=(i,), daemon=True) for i in range(count)]
        for thread in self._threads:
            thread.start()

    def ports(self) -> list[int]:
        return [int(s.getsockname()[1]) for s in self.socks]

    def _drain(self, index: int) -> None:
        sock = self.socks[index]
        while not self._stop.is_set():
            try:
                sock.recv(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            self.counts[index] += 1

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(1)
        for sock in self.socks:
            sock.close()


def _cpu_s(process: psutil.Process) -> float:
    """CPU seconds of all the process's threads: from the scheduler's nanosecond counters where Linux
    has them (psutil's user + system time comes in 10 ms ticks: ±0.2 % of a core over 5 s)."""
    total_ns = 0
    found = False
    for path in Path(f"/proc/{process.pid}/task").glob("*/schedstat"):
        try:
            total_ns += int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        found = True
    if found:
        return total_ns / 1e9
    times = process.cpu_times()
    return float(times.user + times.system)


def bench_processes(
    case: str, modes: list[str], seconds: float, target_pct: float, child_main: Callable[..., None] = _osc_child
) -> ProcessFigures:
    sinks = _Sinks(len(modes))
    config = OscConfig.model_validate(
        {"outputs": [{"name": m, "mode": m, "port": p} for m, p in zip(modes, sinks.ports(), strict=True)]}
    )
    board = ResultBoard()
    stop_flag = new_stop_flag()
    pipes: dict[TrackerPosition, Connection] = {}
    children = []
    readies = []
    for position in (LEFT, RIGHT):
        ready = SPAWN.Event()
        readies.append(ready)
        rx, tx = SPAWN.Pipe(duplex=False)
        pipes[position] = tx
        child = SPAWN.Process(
            target=child_main,
            args=(config.model_dump_json(), rx, position.value, board.shared, stop_flag, ready),
            name=f"bench-osc-{position.value}",
            daemon=True,
        )
        child.start()
        children.append(child)
    procs = [psutil.Process(c.pid) for c in children]
    period = 1.0 / FPS
    try:
        for ready in readies:
            ready.wait(30)  # imports in the children
        i = 0
        next_at = time.monotonic()
        measure_at = next_at + WARMUP_S
        measured = False
        cpu0: list[float] = []
        sent0 = 0
        start = 0.0
        end_at = measure_at + seconds
        while True:
            now = time.monotonic()
            if not measured and now >= measure_at:
                cpu0 = [_cpu_s(p) for p in procs]
                sent0 = sum(sinks.counts)
                start, measured, i0 = now, True, i
            if now >= end_at:
                break
            for offset, position in enumerate((LEFT, RIGHT)):
                record = _record(i + offset * 7, time.monotonic())
                board.post(SLOTS[position], record)
                pipes[position].send_bytes(pack_result(record))
            i += 1
            next_at += period
            time.sleep(max(0.0, next_at - time.monotonic()))
        elapsed = time.monotonic() - start
        cpu = [_cpu_s(p) - c0 for p, c0 in zip(procs, cpu0, strict=True)]
        time.sleep(0.05)
        messages = sum(sinks.counts) - sent0
    finally:
        stop_flag.value = True
        for child in children:
            child.join(3)
            if child.is_alive():
                child.kill()
        for tx in pipes.values():
            tx.close()
        sinks.close()
    total_cpu = sum(cpu)
    return ProcessFigures(
        case=case,
        targets=len(modes),
        seconds=elapsed,
        updates_per_s=2 * (i - i0) / elapsed,
        messages_per_s=messages / elapsed,
        cpu_pct_left=cpu[0] / elapsed * 100,
        cpu_pct_right=cpu[1] / elapsed * 100,
        cpu_pct_total=total_cpu / elapsed * 100,
        cpu_us_per_message=total_cpu / max(messages, 1) * 1e6,
        target_pct=target_pct,
    )


def _median_figures(runs: list[ProcessFigures]) -> ProcessFigures:
    """Each figure's median over the runs (the machine may be shared: single runs are noisy)."""
    first = runs[0]
    numbers = {
        name: statistics.median(getattr(r, name) for r in runs)
        for name, value in asdict(first).items()
        if isinstance(value, float) and name != "target_pct"
    }
    return replace(first, **numbers)


def _verdict(value: float, target: float) -> str:
    return f"{'met' if value <= target else 'NOT met'} (≤ {target:g} %)"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench osc", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short run (smoke test)")
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds per process case")
    parser.add_argument("--repeat", type=int, default=None, help="runs per process case; medians are reported")
    parser.add_argument("--json", type=Path, default=None, help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    seconds = args.seconds or (1.0 if args.quick else 10.0)
    repeat = max(1, args.repeat or (1 if args.quick else 3))
    updates = 500 if args.quick else 20_000

    encoding = bench_encoding(updates)
    print(f"OSC encoding (compose + encode, both eye processes; {updates} updates per mode)")
    print(f"{'mode':<8} {'msgs/update':>11} {'µs/msg':>8} {'msgs/s (1 core)':>16}")
    for e in encoding:
        print(f"{e.mode:<8} {e.messages_per_update:>11.1f} {e.us_per_message:>8.2f} {e.messages_per_s:>16,.0f}")
    warm_us, cold_us = bench_cold_update(30 if args.quick else 300)
    print(
        f"one update's Python work (left eye, v1): {warm_us:.1f} µs CPU back to back, {cold_us:.1f} µs after "
        f"{1e3 / FPS:.0f} ms asleep (caches gone cold: {cold_us / max(warm_us, 1e-9):.0f}x)"
    )

    one_runs: list[ProcessFigures] = []
    three_runs: list[ProcessFigures] = []
    floor_one_runs: list[ProcessFigures] = []
    floor_three_runs: list[ProcessFigures] = []
    for _ in range(repeat):  # interleaved, so all cases see the same machine load
        one_runs.append(bench_processes("1 target (v1)", ["v1"], seconds, TARGET_CPU_ONE_PCT))
        three_runs.append(bench_processes("3 targets (v1+module+babble)", THREE_TARGETS, seconds, TARGET_CPU_THREE_PCT))
        floor_one_runs.append(bench_processes("floor, 1 target", ["v1"], seconds, TARGET_CPU_ONE_PCT, _floor_child))
        floor_three_runs.append(
            bench_processes("floor, 3 targets", THREE_TARGETS, seconds, TARGET_CPU_THREE_PCT, _floor_child)
        )
    one, three = _median_figures(one_runs), _median_figures(three_runs)
    floor_one, floor_three = _median_figures(floor_one_runs), _median_figures(floor_three_runs)
    print(
        f"\nOSC processes (one per eye): 2 trackers x {FPS:.0f} fps, {seconds:g} s measured per run, "
        f"medians of {repeat} run(s); CPU in % of one core"
    )
    print(
        f"{'case':<30} {'msgs/s':>7} {'CPU L %':>7} {'CPU R %':>7} {'CPU sum %':>9} {'µs/result':>9} "
        f"{'µs CPU/msg':>10}  target (each process)"
    )
    for p, runs in ((one, one_runs), (three, three_runs), (floor_one, floor_one_runs), (floor_three, floor_three_runs)):
        us_per_update = p.cpu_pct_total / 100 / max(p.updates_per_s, 1.0) * 1e6
        print(
            f"{p.case:<30} {p.messages_per_s:>7.0f} {p.cpu_pct_left:>7.2f} {p.cpu_pct_right:>7.2f} "
            f"{p.cpu_pct_total:>9.2f} {us_per_update:>9.1f} {p.cpu_us_per_message:>10.1f}  "
            f"{_verdict(p.cpu_pct_per_process, p.target_pct)}"
        )
        if len(runs) > 1:
            print(f"{'':<30} CPU sum % per run: {', '.join(f'{r.cpu_pct_total:.2f}' for r in runs)}")
    extra_msgs = three.messages_per_s - one.messages_per_s
    per_target: dict[str, float] = {}
    if extra_msgs > 0:
        extra_us = (three.cpu_pct_total - one.cpu_pct_total) / 100 / extra_msgs * 1e6
        per_target = {"v1": one.cpu_us_per_message, "extra (module, babble)": extra_us}
        print(
            f"µs CPU per message: 1 target (v1) {one.cpu_us_per_message:.1f} (both processes' CPU over the "
            f"messages sent, wake-ups included); the 2 added targets (module, babble) {extra_us:.1f} per "
            f"added message, {(three.cpu_pct_total - one.cpu_pct_total) / 2:.2f} % of a core per added target"
        )
    print(
        "floor = the OS's share: processes that only wait, read and send the same datagrams (encoded once), with no "
        f"Python work; ours adds {one.cpu_pct_total - floor_one.cpu_pct_total:.2f} % (1 target) and "
        f"{three.cpu_pct_total - floor_three.cpu_pct_total:.2f} % (3 targets) to it"
    )
    for issue, case, floor, target in (
        ("#5 ", one, floor_one, TARGET_CPU_ONE_PCT),
        ("#11", three, floor_three, TARGET_CPU_THREE_PCT),
    ):
        print(
            f"issue {issue} ({case.targets} target{'s' if case.targets > 1 else ''}): OSC process CPU "
            f"{case.cpu_pct_per_process:.2f} % (the busier of the two) {_verdict(case.cpu_pct_per_process, target)}; "
            f"both processes together {case.cpu_pct_total:.2f} %, of which {floor.cpu_pct_total:.2f} % is the floor"
        )
    if args.json:
        payload = {
            "encoding": [asdict(e) for e in encoding],
            "update_us": {"back_to_back": warm_us, "after_idle": cold_us},
            "processes": [
                {**asdict(p), "cpu_pct_per_process": p.cpu_pct_per_process}
                for p in (one, three, floor_one, floor_three)
            ],
            "runs": {"one": [asdict(r) for r in one_runs], "three": [asdict(r) for r in three_runs]},
            "us_per_message": per_target,
        }
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""OSC process: this eye's results + the other eye's latest -> every OSC target, in one pass per result.

One process runs per eye tracker. Which of the two sends which message is decided in
`app.osc.compose` (per-eye messages from each eye's process, combined ones from the leader), so both
processes together send every message once.
"""

from __future__ import annotations

import logging
import os
import select
import struct
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from app.config.models import EtvrConfig, OscConfig, TrackerPosition
from app.osc.compose import EyeSample, build_frame, fresh_eyes
from app.osc.modes import resolve_targets
from app.osc.sender import OscOutputs
from app.runtime.results import ResultBoard, unpack_result
from app.runtime.worker import WorkerProcess
from app.runtime.worker_host import StatusPublisher

if TYPE_CHECKING:
    from app.osc.discovery import VrchatOscFinder

logger = logging.getLogger(__name__)

READ_TIMEOUT_S = 0.1
STATUS_EVERY_S = 0.5  # building the per-target status costs more than a send: not on every update

# Opt-in diagnostic for `bench pipeline` (env ETVR_BENCH_LATENCY=1, off by default): after each update's
# datagrams, one more to the same targets, `/etvr/bench/latency ,siddd` = eye position, frame sequence,
# capture_ts, sent_ts (monotonic seconds as OSC doubles, so no precision is lost) and the raw pupil x.
# sent_ts is read just after the update's last send; latency = sent_ts - capture_ts.
BENCH_LATENCY_ENV = "ETVR_BENCH_LATENCY"
BENCH_LATENCY_ADDRESS = "/etvr/bench/latency"
BENCH_LATENCY_ARGS = struct.Struct(">iddd")


def _osc_string(text: str) -> bytes:
    raw = text.encode("ascii")
    return raw + b"\x00" * (4 - len(raw) % 4)


def bench_latency_prefix(position: TrackerPosition) -> bytes | None:
    """The constant head of this eye's latency datagram, or None when the diagnostic is off."""
    if os.environ.get(BENCH_LATENCY_ENV, "") != "1":
        return None
    return _osc_string(BENCH_LATENCY_ADDRESS) + _osc_string(",siddd") + _osc_string(position.value)


class ResultWaiter:
    """Waits for the next result on the pipe. `Connection.poll` builds a selector on every call (tens of
    µs, twice per result); where the platform has `select.poll` one poller is kept instead."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._poller: Any = None
        if hasattr(select, "poll"):
            self._poller = select.poll()
            self._poller.register(connection.fileno(), select.POLLIN)

    def ready(self, timeout_s: float) -> bool:
        if self._poller is None:
            return self._connection.poll(timeout_s)
        return bool(self._poller.poll(int(timeout_s * 1000)))


class OscSettings:
    """The OSC section, swapped atomically by the config watcher thread."""

    def __init__(self, config: OscConfig) -> None:
        self.config = config
        self.lock = threading.Lock()


def run_osc_loop(
    settings: OscSettings,
    results_rx: Connection,
    own_position: TrackerPosition,
    other_slots: dict[TrackerPosition, int],
    board: ResultBoard,
    outputs: OscOutputs,
    should_stop: Callable[[], bool],
    status: StatusPublisher,
    on_targets: Callable[[OscConfig], None] | None = None,
) -> None:
    """Until `should_stop`: each result of this eye -> one frame -> every target (a config swap in
    `settings` takes effect at the next result)."""
    updates = 0
    bench_prefix = bench_latency_prefix(own_position)
    applied: OscConfig | None = None
    next_status_s = 0.0
    waiter = ResultWaiter(results_rx)
    while not should_stop():
        if time.monotonic() >= next_status_s:
            _publish(status, updates, outputs)
            next_status_s = time.monotonic() + STATUS_EVERY_S
        if not waiter.ready(READ_TIMEOUT_S):
            continue
        while waiter.ready(0.0):
            record = unpack_result(results_rx.recv_bytes())
            config = settings.config
            if config is not applied:
                applied = config
                if on_targets is not None:
                    on_targets(config)
                outputs.configure(resolve_targets(config))
            if not outputs.plans:
                continue
            now = time.monotonic()
            samples = [EyeSample(own_position, record)]
            for position, slot in other_slots.items():
                other = board.read(slot)
                if other is not None:
                    samples.append(EyeSample(position, other))
            frame = build_frame(fresh_eyes(samples, now), config.mirror_eyes, config.sync_blink)
            if frame is None:
                continue
            sent = outputs.send(frame, own_position)
            if bench_prefix is not None and sent:
                args = (int(record.sequence), record.capture_ts, time.monotonic(), record.pupil_x)
                outputs.send_raw(bench_prefix + BENCH_LATENCY_ARGS.pack(*args))
            updates += 1
    _publish(status, updates, outputs)


def _publish(status: StatusPublisher, updates: int, outputs: OscOutputs) -> None:
    sent, errors, last_error = outputs.totals()
    status.set(
        state="sending" if updates else "waiting_for_results",
        updates=updates,
        messages_sent=sent,
        send_errors=errors,
        last_error=last_error,
        targets=outputs.status(),
    )


class OscShell:
    def __init__(self, process: WorkerProcess, status: StatusPublisher, config: EtvrConfig) -> None:
        self.process = process
        self.status = status
        self.settings = OscSettings(config.osc)
        self.finder: VrchatOscFinder | None = None

    def _follow_auto_ports(self, config: OscConfig) -> None:
        """Browse for VRChat's OSCQuery advertisement only while a target asks for its port."""
        wanted = config.enable_sending and any(t.enabled and t.auto_port for t in config.outputs)
        if wanted and self.finder is None:
            from app.osc.discovery import VrchatOscFinder  # zeroconf: imported only when asked for

            self.finder = VrchatOscFinder()
            self.finder.start()
        elif not wanted and self.finder is not None:
            self.finder.close()
            self.finder = None

    def _vrchat_port(self) -> int | None:
        finder = self.finder
        found = finder.found() if finder is not None else None
        return found.osc_port if found is not None else None

    def main(self, config: EtvrConfig) -> None:
        channels = self.process.channels
        outputs = OscOutputs(auto_port=self._vrchat_port)
        board = ResultBoard(channels["board"])
        stop_flag = self.process.stop_flag
        self.status.set(push=True, state="waiting_for_results")
        try:
            position = TrackerPosition(channels["position"])
            others = {TrackerPosition(name): slot for name, slot in channels["other_slots"].items()}
            run_osc_loop(
                self.settings,
                channels["results_rx"],
                position,
                others,
                board,
                outputs,
                lambda: bool(stop_flag.value),
                self.status,
                self._follow_auto_ports,
            )
        finally:
            outputs.close()
            if self.finder is not None:
                self.finder.close()

    def on_config_change(self, config: EtvrConfig, sections: set[str]) -> None:
        if "osc" in sections:
            self.settings.config = config.osc


def build_shell(process: WorkerProcess, status: StatusPublisher, config: EtvrConfig) -> OscShell:
    return OscShell(process, status, config)

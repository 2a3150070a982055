"""OSC process: tracker results -> OSC datagrams over UDP, combining this eye with the others' latest."""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

from app.config.models import EtvrConfig, OscConfig, TrackerPosition
from app.osc.compose import EyeSample, compose_v1, fresh_eyes
from app.runtime.results import ResultBoard, unpack_result
from app.runtime.worker import WorkerProcess
from app.runtime.worker_host import StatusPublisher

logger = logging.getLogger(__name__)

READ_TIMEOUT_S = 0.1

# Opt-in diagnostic for `bench pipeline` (env ETVR_BENCH_LATENCY=1, off by default): after each update's
# datagrams, one more to the same target, `/etvr/bench/latency ,siddd` = eye position, frame sequence,
# capture_ts, sent_ts (monotonic seconds as OSC doubles, so no precision is lost) and the raw pupil x.
# sent_ts is read just after the update's last sendto; latency = sent_ts - capture_ts.
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


class UdpSender:
    """One non-blocking UDP socket; send errors are counted and logged once per kind."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self.sent = 0
        self.errors = 0
        self.last_error: str | None = None

    def send(self, datagram: bytes, target: tuple[str, int]) -> None:
        try:
            self._sock.sendto(datagram, target)
            self.sent += 1
        except OSError as exc:
            self.errors += 1
            message = f"sending to {target[0]}:{target[1]} failed: {exc}"
            if message != self.last_error:
                logger.warning("%s", message)
            self.last_error = message

    def close(self) -> None:
        self._sock.close()


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
    sender: UdpSender,
    should_stop: Callable[[], bool],
    status: StatusPublisher,
) -> None:
    updates = 0
    bench_prefix = bench_latency_prefix(own_position)
    while not should_stop():
        if not results_rx.poll(READ_TIMEOUT_S):
            continue
        while results_rx.poll(0):
            record = unpack_result(results_rx.recv_bytes())
            config = settings.config
            if not config.enable_sending:
                continue
            now = time.monotonic()
            samples = [EyeSample(own_position, record)]
            for position, slot in other_slots.items():
                other = board.read(slot)
                if other is not None:
                    samples.append(EyeSample(position, other))
            target = (config.address, config.sending_port)
            datagrams = compose_v1(config, fresh_eyes(samples, now))
            for datagram in datagrams:
                sender.send(datagram, target)
            if bench_prefix is not None and datagrams:
                args = (int(record.sequence), record.capture_ts, time.monotonic(), record.pupil_x)
                sender.send(bench_prefix + BENCH_LATENCY_ARGS.pack(*args), target)
            updates += 1
        status.set(
            state="sending",
            updates=updates,
            messages_sent=sender.sent,
            send_errors=sender.errors,
            last_error=sender.last_error,
        )


class OscShell:
    def __init__(self, process: WorkerProcess, status: StatusPublisher, config: EtvrConfig) -> None:
        self.process = process
        self.status = status
        self.settings = OscSettings(config.osc)

    def main(self, config: EtvrConfig) -> None:
        channels = self.process.channels
        sender = UdpSender()
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
                sender,
                lambda: bool(stop_flag.value),
                self.status,
            )
        finally:
            sender.close()

    def on_config_change(self, config: EtvrConfig, sections: set[str]) -> None:
        if "osc" in sections:
            self.settings.config = config.osc


def build_shell(process: WorkerProcess, status: StatusPublisher, config: EtvrConfig) -> OscShell:
    return OscShell(process, status, config)

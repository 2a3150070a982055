"""The OSC loop of both eye processes (run as threads here) sending over real UDP sockets to several targets."""

from __future__ import annotations

import math
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from typing import Any

import pytest
from pythonosc.osc_message import OscMessage

from app.config.models import OscConfig, TrackerPosition
from app.osc.compose import eye_values, frame_of
from app.osc.modes import resolve_targets
from app.osc.output import BLINK_REPEATS, TargetEncoder
from app.osc.sender import OscOutputs
from app.runtime.osc_process import BENCH_LATENCY_ADDRESS, BENCH_LATENCY_ENV, OscSettings, run_osc_loop
from app.runtime.results import ResultBoard, ResultRecord, pack_result
from app.runtime.worker_host import StatusPublisher

LEFT, RIGHT = TrackerPosition.LEFT_EYE, TrackerPosition.RIGHT_EYE
SLOTS = {LEFT: 0, RIGHT: 1}
FPS = 90.0


@dataclass
class Sink:
    """A UDP socket collecting every datagram that arrives, parsed."""

    sock: socket.socket = field(default_factory=lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    messages: list[tuple[float, OscMessage]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        port: int = self.sock.getsockname()[1]
        return port

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), OscMessage(data)))

    def by_address(self) -> dict[str, list[list[float]]]:
        out: dict[str, list[list[float]]] = defaultdict(list)
        for _, m in list(self.messages):
            out[m.address].append([float(p) for p in m.params])
        return out

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@dataclass
class Eyes:
    """Two OSC loops fed like the tracker processes feed them: a pipe each and the shared board."""

    settings: OscSettings
    board: ResultBoard = field(default_factory=ResultBoard)
    status: dict[str, Any] = field(default_factory=dict)
    pipes: dict[TrackerPosition, Connection] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    outputs: list[OscOutputs] = field(default_factory=list)

    def start(self) -> None:
        for position in (LEFT, RIGHT):
            rx, tx = Pipe(duplex=False)
            self.pipes[position] = tx
            other = {p: s for p, s in SLOTS.items() if p != position}
            publisher = StatusPublisher(self.status, position.value)
            outputs = OscOutputs()
            self.outputs.append(outputs)
            thread = threading.Thread(
                target=run_osc_loop,
                args=(self.settings, rx, position, other, self.board, outputs, self.stop.is_set, publisher),
                daemon=True,
            )
            thread.start()
            self.threads.append(thread)

    def feed(self, position: TrackerPosition, **values: float) -> None:
        record = ResultRecord(processed_ts=time.monotonic(), **values)
        self.board.post(SLOTS[position], record)
        self.pipes[position].send_bytes(pack_result(record))

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(2)
        for outputs in self.outputs:
            outputs.close()
        for tx in self.pipes.values():
            tx.close()


@contextmanager
def running(config: dict[str, Any]) -> Iterator[Eyes]:
    eyes = Eyes(OscSettings(OscConfig.model_validate(config)))
    eyes.start()
    try:
        yield eyes
    finally:
        eyes.close()


def feed_both(eyes: Eyes, seconds: float, left: dict[str, float], right: dict[str, float]) -> None:
    period = 1.0 / FPS
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        eyes.feed(LEFT, **left)
        eyes.feed(RIGHT, **right)
        time.sleep(period)


def test_three_targets_in_different_modes_get_consistent_values_from_one_run() -> None:
    sinks = [Sink(), Sink(), Sink()]
    config = {
        "outputs": [
            {"name": "vrchat", "mode": "v1", "port": sinks[0].port},
            {"name": "module", "mode": "module", "port": sinks[1].port},
            {"name": "babble", "mode": "babble", "port": sinks[2].port, "prefix": "/bab"},
        ]
    }
    left = {"gaze_x": -0.5, "gaze_y": 0.25, "openness": 0.8, "dilation": 0.2}
    right = {"gaze_x": 0.5, "gaze_y": 0.75, "openness": 0.6, "dilation": 0.6}
    try:
        with running(config) as eyes:
            feed_both(eyes, 0.5, left, right)
            time.sleep(0.1)
            v1, module, babble = (s.by_address() for s in sinks)
            statuses = dict(eyes.status)
    finally:
        for sink in sinks:
            sink.close()
    assert v1["/avatar/parameters/LeftEyeX"][-1] == [-0.5]
    assert v1["/avatar/parameters/EyesY"][-1] == [0.5]  # average of both eyes
    assert v1["/avatar/parameters/EyesDilation"][-1] == [0.4000000059604645]
    assert module["/avatar/parameters/v2/EyeLeftX"][-1] == [-0.5]
    assert module["/avatar/parameters/v2/EyeRightY"][-1] == [0.75]
    assert babble["/bab/LeftEyeX"][-1] == [-0.5] and babble["/bab/RightEyeY"][-1] == [0.75]
    assert babble["/bab/RightEyeLid"][-1] == [0.6000000238418579]
    # Each process sends per-eye messages for its own eye; the combined ones once (the left eye leads).
    updates = len(v1["/avatar/parameters/LeftEyeX"])
    assert updates > 20
    assert abs(len(v1["/avatar/parameters/EyesY"]) - updates) <= 2
    assert abs(len(v1["/avatar/parameters/RightEyeX"]) - updates) <= 3
    # Per-target counters in each process's status.
    left_targets = statuses[LEFT.value]["targets"]
    assert [t["name"] for t in left_targets] == ["vrchat", "module", "babble"]
    assert all(t["messages_sent"] > 0 and t["send_errors"] == 0 for t in left_targets)


def test_a_closed_port_target_counts_errors_and_does_not_slow_the_others() -> None:
    def rate(config_extra: list[dict[str, Any]]) -> tuple[float, dict[str, Any]]:
        sink = Sink()
        config = {"outputs": [{"name": "good", "mode": "v1", "port": sink.port}, *config_extra]}
        try:
            with running(config) as eyes:
                start = time.monotonic()
                feed_both(eyes, 0.6, {"gaze_x": 0.1}, {"gaze_x": 0.2})
                time.sleep(0.6)  # one more status period
                eyes.feed(LEFT, gaze_x=0.1)
                time.sleep(0.1)
                elapsed = time.monotonic() - start
                received = len(sink.by_address()["/avatar/parameters/LeftEyeX"])
                return received / elapsed, dict(eyes.status)
        finally:
            sink.close()

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]  # closed once this block ends
    alone, _ = rate([])
    with_dead, statuses = rate([{"name": "dead", "mode": "babble", "port": closed_port}])
    assert with_dead > 0.8 * alone, (alone, with_dead)
    dead = next(t for t in statuses[LEFT.value]["targets"] if t["name"] == "dead")
    assert dead["send_errors"] > 0 and "refused" in (dead["last_error"] or "").lower()
    assert dead["listening"] is False
    good = next(t for t in statuses[LEFT.value]["targets"] if t["name"] == "good")
    assert good["send_errors"] == 0 and good["listening"] is True
    # Nobody listening (the receiving program not started yet) is a notice for the user, not a fault.
    assert statuses[LEFT.value]["last_error"] is None
    assert f"nothing is listening on 127.0.0.1:{closed_port}" in statuses[LEFT.value]["notice"]


def test_address_and_port_changes_apply_without_restart() -> None:
    first, second = Sink(), Sink()
    try:
        with running({"outputs": [{"mode": "v1", "port": first.port}]}) as eyes:
            feed_both(eyes, 0.2, {}, {})
            eyes.settings.config = OscConfig.model_validate({"outputs": [{"mode": "v2", "port": second.port}]})
            switched = time.monotonic()
            feed_both(eyes, 0.3, {}, {})
            time.sleep(0.05)
        arrivals = [t for t, m in second.messages if m.address.startswith("/avatar/parameters/v2/")]
        assert arrivals and arrivals[0] - switched < 1.0
        assert not [m for t, m in first.messages if t > switched + 0.1]
    finally:
        first.close()
        second.close()


def test_single_eye_sends_everything_from_that_eye() -> None:
    sink = Sink()
    try:
        with running({"outputs": [{"mode": "v2", "port": sink.port}]}) as eyes:
            for _ in range(10):
                eyes.feed(RIGHT, gaze_x=0.3, gaze_y=-0.2, openness=0.9)
                time.sleep(1 / FPS)
            time.sleep(0.1)
        got = sink.by_address()
    finally:
        sink.close()
    assert set(got) == {f"/avatar/parameters/v2/{n}" for n in ("EyeX", "EyeY", "EyeLid", "PupilDilation")}
    assert got["/avatar/parameters/v2/EyeX"][-1] == [0.30000001192092896]


def test_wild_values_are_clamped_blinks_repeated_and_sync_blink_followed_through_the_loop() -> None:
    sink = Sink()
    v1 = "/avatar/parameters/"
    try:
        with running({"outputs": [{"mode": "v1", "port": sink.port}], "sync_blink": True}) as eyes:
            for _ in range(8):
                eyes.feed(LEFT, gaze_x=math.nan, gaze_y=7.0, openness=0.0, dilation=math.inf)
                eyes.feed(RIGHT, gaze_x=-3.0, gaze_y=0.5, openness=0.9, dilation=0.5)
                time.sleep(1 / FPS)
            time.sleep(0.1)
        got = sink.by_address()
    finally:
        sink.close()
    assert all(math.isfinite(v) for values in got.values() for args in values for v in args)
    assert got[v1 + "LeftEyeX"][-1] == [0.0]  # NaN: the middle of the range
    assert got[v1 + "RightEyeX"][-1] == [-1.0]
    assert got[v1 + "EyesY"][-1] == [0.75]  # (1 + 0.5) / 2
    assert got[v1 + "EyesDilation"][-1] == [0.75]
    # Sync blink: both lids take the closed eye's openness; the closing update repeats them.
    for lid in ("LeftEyeLidExpandedSqueeze", "RightEyeLidExpandedSqueeze"):
        assert {args[0] for args in got[v1 + lid]} == {0.0}
        assert len(got[v1 + lid]) >= BLINK_REPEATS + 7 - 1


def test_bench_latency_datagram_follows_each_update_when_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BENCH_LATENCY_ENV, "1")
    sink = Sink()
    try:
        with running({"outputs": [{"mode": "v1", "port": sink.port}]}) as eyes:
            for _ in range(5):
                eyes.feed(LEFT, gaze_x=0.1, sequence=42.0, capture_ts=time.monotonic() - 0.01, pupil_x=12.5)
                time.sleep(1 / FPS)
            time.sleep(0.1)
        records = [m.params for _, m in sink.messages if m.address == BENCH_LATENCY_ADDRESS]
    finally:
        sink.close()
    assert len(records) == 5  # one per update
    latency = records[-1]
    assert latency[0] == LEFT.value and latency[1] == 42 and latency[4] == 12.5
    assert 0.0 < latency[3] - latency[2] < 1.0  # sent_ts after capture_ts
    assert latency[2] <= latency[5] <= latency[3]  # the result was ready in between


def test_outputs_send_puts_exactly_the_encoders_datagrams_on_the_wire() -> None:
    sink = Sink()
    outputs = OscOutputs()
    try:
        config = OscConfig.model_validate({"outputs": [{"mode": "babble", "port": sink.port}]})
        outputs.configure(resolve_targets(config))
        left = eye_values(-0.25, 0.5, 0.05, 0.5, 0.0, 0.0)  # closed: the lid goes out BLINK_REPEATS times
        right = eye_values(0.25, -0.5, 0.9, 0.5, 0.0, 0.0)
        frame = frame_of(left, right, False, False)
        assert frame is not None
        expected = TargetEncoder(outputs.plans[0]).datagrams(frame, LEFT)
        assert outputs.send(frame, LEFT) == len(expected) == 6 + BLINK_REPEATS - 1
        time.sleep(0.1)
        received = sorted(m.dgram for _, m in sink.messages)
        status = outputs.status()
    finally:
        outputs.close()
        sink.close()
    assert received == sorted(expected)
    assert status[0]["messages_sent"] == len(expected) and status[0]["send_errors"] == 0

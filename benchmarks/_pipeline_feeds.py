"""The pipeline benchmark's outside world, each in its own process so its GIL never slows the measurement:
an OSC receiver (UDP) that keeps the service's `/etvr/bench/latency` records, and a fake OpenIris camera
(MJPEG over HTTP) streaming pre-rendered virtual-eye JPEGs, or the frames of a real eye clip, at a given rate.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import select
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess
from pathlib import Path
from typing import Any

SPAWN = multiprocessing.get_context("spawn")

BENCH_PREFIX = b"/etvr/bench/latency\x00,sidddd\x00"
BENCH_ARGS = struct.Struct(">idddd")
FLOAT = struct.Struct(">f")
X_ADDRESSES = {"LEFT_EYE": b"/avatar/parameters/LeftEyeX\x00", "RIGHT_EYE": b"/avatar/parameters/RightEyeX\x00"}
RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024
POLL_S = 0.05
RENDER_FPS = 90.0  # script time between the fake camera's pre-rendered frames
START_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class BenchRecord:
    """One OSC update as the receiver saw it."""

    target: int  # which receiving socket (one per service)
    position: str  # LEFT_EYE / RIGHT_EYE
    sequence: int  # camera frame sequence
    capture_ts: float  # monotonic, at capture
    sent_ts: float  # monotonic, just after the update's last sendto
    pupil_x: float  # raw pupil x in ROI pixels (NaN when not found)
    received_ts: float  # monotonic, when this process read it
    osc_x: float  # the eye's x value of the same update (NaN if none seen yet)
    processed_ts: float  # monotonic, when the tracker's result was ready


@dataclass(frozen=True, slots=True)
class Take:
    records: list[BenchRecord]
    datagrams: int  # every datagram received since the previous take
    kernel_drops: int | None  # datagrams the kernel dropped on our sockets (Linux), cumulative


def _parse_bench(data: bytes) -> tuple[str, tuple[int, float, float, float, float]] | None:
    start = len(BENCH_PREFIX)
    end = data.find(b"\x00", start)
    if end < 0:
        return None
    position = data[start:end].decode("ascii", "replace")
    args_at = start + (end - start) // 4 * 4 + 4
    if len(data) < args_at + BENCH_ARGS.size:
        return None
    seq, capture_ts, sent_ts, pupil_x, processed_ts = BENCH_ARGS.unpack_from(data, args_at)
    return position, (seq, capture_ts, sent_ts, pupil_x, processed_ts)


def _kernel_drops(ports: list[int]) -> int | None:
    """The `drops` column of /proc/net/udp for our sockets (None where there is no such file)."""
    try:
        lines = open("/proc/net/udp").read().splitlines()[1:]  # noqa: SIM115 - procfs, read once
    except OSError:
        return None
    wanted = {f"{port:04X}" for port in ports}
    drops = 0
    for line in lines:
        parts = line.split()
        if len(parts) > 12 and parts[1].rsplit(":", 1)[-1] in wanted:
            drops += int(parts[-1])
    return drops


def _receiver_main(count: int, control: Connection) -> None:
    sockets = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        sockets.append(sock)
    ports = [s.getsockname()[1] for s in sockets]
    control.send(ports)
    by_fd = {s.fileno(): (index, s) for index, s in enumerate(sockets)}
    last_x: dict[tuple[int, bytes], float] = {}
    records: list[BenchRecord] = []
    datagrams = 0
    while True:
        readable, _, _ = select.select([*by_fd, control.fileno()], [], [], POLL_S)
        for fd in readable:
            if fd == control.fileno():
                continue
            index, sock = by_fd[fd]
            while True:
                try:
                    data = sock.recv(2048)
                except BlockingIOError:
                    break
                now = time.monotonic()
                datagrams += 1
                if data.startswith(BENCH_PREFIX):
                    parsed = _parse_bench(data)
                    if parsed is not None:
                        position, (seq, capture_ts, sent_ts, pupil_x, processed_ts) = parsed
                        osc_x = last_x.get((index, X_ADDRESSES.get(position, b"")), float("nan"))
                        records.append(
                            BenchRecord(index, position, seq, capture_ts, sent_ts, pupil_x, now, osc_x, processed_ts)
                        )
                elif len(data) >= 8:
                    end = data.find(b"\x00")
                    address = data[: end + 1]
                    if address in (X_ADDRESSES["LEFT_EYE"], X_ADDRESSES["RIGHT_EYE"]):
                        last_x[(index, address)] = FLOAT.unpack_from(data, len(data) - 4)[0]
        if control.poll(0):
            command = control.recv()
            if command == "take":
                control.send(Take(records, datagrams, _kernel_drops(ports)))
                records, datagrams = [], 0
            elif command == "stop":
                break
    for sock in sockets:
        sock.close()


class OscReceiver:
    """`count` UDP sockets in a child process; `take()` returns what arrived since the previous take."""

    def __init__(self, count: int) -> None:
        self._control, child_end = SPAWN.Pipe()
        self._process: SpawnProcess = SPAWN.Process(
            target=_receiver_main, args=(count, child_end), name="bench-osc-receiver", daemon=True
        )
        self._process.start()
        child_end.close()
        if not self._control.poll(START_TIMEOUT_S):
            raise RuntimeError("the OSC receiver process did not start")
        self.ports: list[int] = self._control.recv()

    def take(self) -> Take:
        self._control.send("take")
        take: Take = self._control.recv()
        return take

    def close(self) -> None:
        _stop_child(self._control, self._process)


def _stop_child(control: Connection, process: SpawnProcess) -> None:
    """Ask a helper process to stop over its control pipe; kill it if it has not within 5 s."""
    with contextlib.suppress(OSError):
        control.send("stop")
    process.join(5)
    if process.is_alive():
        process.kill()
    control.close()


def _jpegs(timed_frames: Iterable[tuple[float, Any]], quality: int) -> list[bytes]:
    import cv2

    jpegs = []
    for _, gray in timed_frames:
        ok, encoded = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            jpegs.append(encoded.tobytes())
    return jpegs


def render_jpegs(count: int, quality: int = 85, fps: float = RENDER_FPS) -> list[bytes]:
    """`count` consecutive frames of the default virtual eye at `fps` of script time, as a camera sends them."""
    from benchmarks._accuracy_sets import source_frames

    # The eye moves, blinks and saccades as it would live.
    return _jpegs(source_frames("default", count, fps), quality)


def clip_jpegs(path: Path, count: int, quality: int = 85) -> list[bytes]:
    """The first `count` frames of a real eye clip (grey, as an IR camera sends them), as JPEGs."""
    from benchmarks._accuracy_sets import read_clip

    jpegs = _jpegs(read_clip(path, count), quality)
    if not jpegs:
        raise RuntimeError(f"no frame could be read from {path}")
    return jpegs


def _camera_main(fps: float, frame_count: int, clip: Path | None, control: Connection) -> None:
    from tests.fakes.openiris_http import FakeOpenIrisHttpServer

    frames = render_jpegs(frame_count) if clip is None else clip_jpegs(clip, frame_count)
    server = FakeOpenIrisHttpServer(frames, fps=fps).start()
    control.send(server.url)
    while True:
        command = control.recv()
        if command == "frames_sent":
            control.send(server.frames_sent)
        elif command == "stop":
            break
    server.stop()


class FakeCameraProcess:
    """A fake OpenIris MJPEG camera (tests/fakes/openiris_http.py) in a child; fps 0 = as fast as possible.

    It streams `frame_count` virtual-eye frames in a loop, or with `clip` that video's first `frame_count`
    frames. Every connection gets its own paced stream of the same frames, so several trackers can share one.
    """

    def __init__(self, fps: float, frame_count: int = 360, clip: Path | None = None) -> None:
        self.fps = fps
        self._control, child_end = SPAWN.Pipe()
        self._process: SpawnProcess = SPAWN.Process(
            target=_camera_main, args=(fps, frame_count, clip, child_end), name="bench-fake-camera", daemon=True
        )
        self._process.start()
        child_end.close()
        if not self._control.poll(START_TIMEOUT_S):
            raise RuntimeError("the fake camera process did not start")
        self.url: str = self._control.recv()

    def frames_sent(self) -> int:
        self._control.send("frames_sent")
        sent: int = self._control.recv()
        return sent

    def close(self) -> None:
        _stop_child(self._control, self._process)

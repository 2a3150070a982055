"""MJPEG over HTTP under a flood: what a camera sending as fast as it can costs the reader.

`python build.py bench mjpeg_flood [--seconds S] [--quick]`. The fake OpenIris camera (tests/fakes) runs
in its own process and sends 240x240 JPEGs as fast as loopback TCP takes them; the reader
(`MjpegHttpSource`, this process) reads for S seconds, once with its default `max_fps` cap and once
uncapped, and with two send buffers on the camera's side: a small one as on the ESP32, and the OS-tuned
one (megabytes on loopback, whose queued frames are stale before any reader can see them). Printed: the
camera's sending rate, frames/s delivered, the reader's CPU per delivered frame
and its share of a core, and how many frames the delivered one was behind the newest sent (p50/p99):
a reader that works through a backlog falls behind; one that stays current does not.
"""

from __future__ import annotations

import argparse
import ctypes
import multiprocessing
import os
import socket
import time
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from app.camera.mjpeg_http import DEFAULT_MAX_FPS, MjpegHttpSource
from benchmarks._stats import print_table

SPAWN = multiprocessing.get_context("spawn")
FRAME_SET = 64
INDEX_MODULO = 4096  # the fake frames' bar code holds 12 bits
# An ESP32's lwIP send buffer is a few kB, so a real camera cannot queue much; a desktop server's OS buffer
# grows to megabytes, and what sits in it is stale before any reader sees it.
ESP32_SEND_BUFFER_BYTES = 16 * 1024


def _serve(port_tx: Connection, stop: Any, sent: Any, send_buffer_bytes: int) -> None:
    import cv2
    from tests.fakes.jpeg import eye_like_image
    from tests.fakes.openiris_http import FakeOpenIrisHttpServer

    class Camera(FakeOpenIrisHttpServer):
        def _serve(self, client: socket.socket) -> None:
            if send_buffer_bytes:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_bytes)
            super()._serve(client)

    quality = [cv2.IMWRITE_JPEG_QUALITY, 90]
    jpegs = [bytes(cv2.imencode(".jpg", eye_like_image(i), quality)[1]) for i in range(INDEX_MODULO)]

    def frame(index: int) -> bytes:
        sent.value = index
        return jpegs[index % INDEX_MODULO]

    with Camera(frame, fps=0) as server:
        port_tx.send((server.port, len(jpegs[0])))
        while not stop.value:
            time.sleep(0.05)


def measure(max_fps: float, send_buffer_bytes: int, seconds: float) -> dict[str, float]:
    from tests.fakes.jpeg import frame_index_of

    port_rx, port_tx = SPAWN.Pipe(duplex=False)
    stop = SPAWN.RawValue(ctypes.c_bool, False)
    sent = SPAWN.RawValue(ctypes.c_long, 0)
    server = SPAWN.Process(target=_serve, args=(port_tx, stop, sent, send_buffer_bytes), daemon=True)
    server.start()
    try:
        if not port_rx.poll(60.0):
            raise RuntimeError("the fake camera did not start")
        port, jpeg_bytes = port_rx.recv()
        source = MjpegHttpSource(f"http://127.0.0.1:{port}/", max_fps=max_fps)
        source.open()
        for _ in range(20):  # warm up: the connection and the first backlog
            source.read(1.0)
        lags: list[int] = []
        stale_before, sent_before = source.dropped_stale, sent.value
        check_cpu_s = 0.0
        cpu_before = time.process_time()
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            frame = source.read(1.0)
            if frame is not None:
                newest = sent.value
                check_started = time.process_time()
                lags.append((newest - frame_index_of(frame.gray)) % INDEX_MODULO)
                check_cpu_s += time.process_time() - check_started
        elapsed = time.monotonic() - started
        cpu_s = time.process_time() - cpu_before - check_cpu_s  # reading the bar code is not the reader's
        sent_frames = sent.value - sent_before
        stale = source.dropped_stale - stale_before
        source.close()
    finally:
        stop.value = True
        server.join(5)
        if server.is_alive():
            server.kill()
    delivered = len(lags)
    p50, p99 = np.percentile(lags, [50, 99]) if lags else (float("nan"), float("nan"))
    return {
        "sent_fps": sent_frames / elapsed,
        "fps": delivered / elapsed,
        "cpu_us": cpu_s / delivered * 1e6 if delivered else float("nan"),
        "cpu_share": cpu_s / elapsed,
        "lag_p50": float(p50),
        "lag_p99": float(p99),
        "stale": stale,
        "jpeg_bytes": jpeg_bytes,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench mjpeg_flood", description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per case")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (0.5 s per case)")
    args = parser.parse_args(argv)
    seconds = 0.5 if args.quick else args.seconds
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; 240x240 JPEGs, {seconds:.1f} s per case")
    rows = []
    jpeg_bytes = 0
    cameras = ((f"{ESP32_SEND_BUFFER_BYTES // 1024} kB (ESP32-like)", ESP32_SEND_BUFFER_BYTES), ("OS-tuned (MBs)", 0))
    for camera_label, send_buffer_bytes in cameras:
        for label, max_fps in ((f"max_fps {DEFAULT_MAX_FPS:g} (default)", DEFAULT_MAX_FPS), ("uncapped", 0.0)):
            m = measure(max_fps, send_buffer_bytes, seconds)
            jpeg_bytes = int(m["jpeg_bytes"])
            rows.append(
                [
                    camera_label,
                    label,
                    round(m["sent_fps"]),
                    round(m["fps"]),
                    round(m["cpu_us"], 1),
                    f"{m['cpu_share'] * 100:.0f} %",
                    m["lag_p50"],
                    m["lag_p99"],
                    int(m["stale"]),
                ]
            )
    print(f"JPEG size ~{jpeg_bytes / 1024:.1f} kB")
    headers = [
        "camera send buffer",
        "reader",
        "camera sent fps",
        "delivered fps",
        "CPU µs/frame",
        "CPU",
        "behind p50",
        "behind p99",
        "stale",
    ]
    print_table(headers, rows)
    return 0

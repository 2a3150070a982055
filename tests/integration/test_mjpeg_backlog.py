"""MJPEG over HTTP against a backlog: one read hands out the newest frame, not the oldest queued one."""

from __future__ import annotations

import time

from app.camera.mjpeg_http import MjpegHttpSource
from tests.fakes.jpeg import frame_index_of, make_jpegs
from tests.fakes.openiris_http import FakeOpenIrisHttpServer, StreamFaults

JPEGS = make_jpegs(40, width=96, height=72)
QUEUED = 40  # ~40 kB of small frames: all of them fit in the reader's receive buffer


def test_one_read_skips_a_queued_backlog_to_the_newest_frame() -> None:
    with FakeOpenIrisHttpServer(JPEGS, fps=0, faults=StreamFaults(stall_after_frames=QUEUED)) as server:
        source = MjpegHttpSource(server.url, max_fps=0)
        try:
            source.open()
            deadline = time.monotonic() + 5.0
            while server.frames_sent < QUEUED and time.monotonic() < deadline:
                time.sleep(0.01)
            assert server.frames_sent == QUEUED
            time.sleep(0.05)  # the last bytes reach the reader's socket
            frame = source.read(1.0)
            assert frame is not None
            assert frame_index_of(frame.gray) == QUEUED - 1
            c = source.counters
            assert c.decoded == 1 and c.corrupt == 0
            assert source.dropped_stale == QUEUED - 1
            assert c.received == c.decoded + c.corrupt + source.dropped_stale
        finally:
            source.close()

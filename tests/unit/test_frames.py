from __future__ import annotations

import os
from multiprocessing import Pipe

import numpy as np
import pytest

from app.runtime.frames import FrameReader, FrameTooLargeError, FrameWriter, MemoryFrameStore, SharedFrameStore


def frame(value: int, shape: tuple[int, ...] = (24, 32)) -> np.ndarray:
    return np.full(shape, value, dtype=np.uint8)


def test_reader_takes_the_newest_frame_and_counts_the_skipped() -> None:
    rx, tx = Pipe(duplex=False)
    store = MemoryFrameStore(slots=4, max_frame_bytes=32 * 24)
    writer, reader = FrameWriter(store, tx), FrameReader(store, rx)
    for value in (10, 20, 30):
        writer.write(frame(value), capture_ts=value / 1000)
    got = reader.read_newest(0.1)
    assert got is not None
    record, image = got
    assert record.sequence == 3 and record.capture_ts == pytest.approx(0.03)
    assert image.shape == (24, 32) and int(image[0, 0]) == 30
    assert reader.skipped == 2
    assert reader.read_newest(0.01) is None, "nothing new: a timeout, not the old frame again"


def test_colour_frames_keep_their_shape() -> None:
    rx, tx = Pipe(duplex=False)
    store = MemoryFrameStore(slots=2, max_frame_bytes=8 * 6 * 3)
    FrameWriter(store, tx).write(frame(7, (6, 8, 3)), 1.0)
    got = FrameReader(store, rx).read_newest(0.1)
    assert got is not None and got[1].shape == (6, 8, 3)


def test_a_frame_overwritten_before_it_is_read_is_dropped_as_torn() -> None:
    rx, tx = Pipe(duplex=False)
    store = MemoryFrameStore(slots=2, max_frame_bytes=32 * 24)
    writer, reader = FrameWriter(store, tx), FrameReader(store, rx)
    writer.write(frame(1), 0.0)
    raw = rx.recv_bytes()  # the reader is slow: two more frames wrap around the two slots
    writer.write(frame(2), 0.0)
    writer.write(frame(3), 0.0)
    while rx.poll(0):
        rx.recv_bytes()
    tx.send_bytes(raw)  # the stale announcement of slot 0 arrives last
    assert reader.read_newest(0.1) is None and reader.torn == 1


def test_too_large_frame_is_refused() -> None:
    _, tx = Pipe(duplex=False)
    writer = FrameWriter(MemoryFrameStore(slots=2, max_frame_bytes=100), tx)
    with pytest.raises(FrameTooLargeError):
        writer.write(frame(0, (20, 20)), 0.0)


@pytest.mark.skipif(os.name != "posix", reason="non-blocking pipe writes are POSIX-only")
def test_writer_never_blocks_on_a_reader_that_stopped_reading() -> None:
    rx, tx = Pipe(duplex=False)
    writer = FrameWriter(MemoryFrameStore(slots=2, max_frame_bytes=4), tx)
    for _ in range(20_000):  # far more records than a pipe buffer holds
        writer.write(frame(0, (2, 2)), 0.0)
    assert writer.dropped > 0
    rx.close()


def test_shared_store_is_visible_to_a_second_attachment_and_unlinked_by_its_owner() -> None:
    owner = SharedFrameStore(None, slots=2, max_frame_bytes=32 * 24, create=True)
    other = SharedFrameStore(owner.name, slots=2, max_frame_bytes=32 * 24)
    rx, tx = Pipe(duplex=False)
    FrameWriter(owner, tx).write(frame(99), 5.0)
    got = FrameReader(other, rx).read_newest(0.1)
    assert got is not None and int(got[1][3, 3]) == 99
    other.close()
    owner.close()
    assert not os.path.exists(f"/dev/shm/{owner.name.lstrip('/')}") or os.name != "posix"

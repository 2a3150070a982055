from __future__ import annotations

import ctypes
import multiprocessing
import os
import struct
import threading
import time
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import pytest

from app.runtime.frames import (
    CONTROL,
    NO_SLOT,
    FrameReader,
    FrameTooLargeError,
    FrameWriter,
    MemoryFrameStore,
    SharedFrameStore,
)


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


# -- newest frame under a flood, held slot, one-read drain ------------------------------------------------------


def _stamped(sequence: int, shape: tuple[int, ...] = (48, 64)) -> np.ndarray:
    """A frame whose every pixel says which sequence it belongs to: a torn copy mixes two values."""
    image = np.full(shape, sequence % 251, dtype=np.uint8)
    image.reshape(-1)[:8] = np.frombuffer(struct.pack("<q", sequence), dtype=np.uint8)
    return image


def _stamp_of(image: np.ndarray) -> int:
    flat = image.reshape(-1)
    sequence = int(struct.unpack("<q", flat[:8].tobytes())[0])
    assert np.all(flat[8:] == sequence % 251), f"torn frame: pixels of several sequences in {sequence}"
    return sequence


def _flooding_writer(store_name: str, max_bytes: int, tx: Connection, stop: Any, announced: Any) -> None:
    store = SharedFrameStore(store_name, slots=4, max_frame_bytes=max_bytes)
    writer = FrameWriter(store, tx)
    while not stop.value:
        dropped = writer.dropped
        sequence = writer.sequence + 1
        writer.write(_stamped(sequence), time.monotonic())
        if writer.dropped == dropped:
            announced.value = sequence  # the pipe took the record: a reader can see it
    del writer
    store.close()


def test_flooded_reader_gets_the_newest_whole_frame_every_time() -> None:
    spawn = multiprocessing.get_context("spawn")
    max_bytes = 48 * 64
    store = SharedFrameStore(None, slots=4, max_frame_bytes=max_bytes, create=True)
    rx, tx = spawn.Pipe(duplex=False)
    stop = spawn.RawValue(ctypes.c_bool, False)
    announced = spawn.RawValue(ctypes.c_long, 0)
    writer = spawn.Process(target=_flooding_writer, args=(store.name, max_bytes, tx, stop, announced), daemon=True)
    writer.start()
    reader = FrameReader(store, rx)
    try:
        assert reader.read_newest(20.0) is not None, "the writer process never started"
        last, reads, deadline = 0, 0, time.monotonic() + 0.3
        while time.monotonic() < deadline:
            newest_before = announced.value
            got = reader.read_newest(2.0)
            assert got is not None, "a flooding writer must always give the reader a frame"
            record, image = got
            assert _stamp_of(image) == record.sequence
            assert record.sequence >= newest_before, "the reader returned a frame older than one announced"
            assert record.sequence > last
            last, reads = record.sequence, reads + 1
        assert reads > 100
        assert reader.skipped > 0, "the writer was faster than the reader: records were passed over"
    finally:
        stop.value = True
        writer.join(5)
        del reader
        store.close()
    assert writer.exitcode == 0


def test_writer_skips_the_slot_the_reader_holds() -> None:
    rx, tx = Pipe(duplex=False)
    store = MemoryFrameStore(slots=3, max_frame_bytes=32 * 24)
    writer, reader = FrameWriter(store, tx), FrameReader(store, rx)
    writer.write(frame(1), 0.0)
    writer.write(frame(2), 0.0)  # slot 1
    CONTROL.pack_into(store.buffer, 0, 1)  # what the reader does while it copies slot 1
    for value in range(3, 9):
        writer.write(frame(value), 0.0)
    assert writer.held_skips > 0
    assert int(store.pixels(1)[0]) == 2, "the held slot was overwritten"
    CONTROL.pack_into(store.buffer, 0, NO_SLOT)
    got = reader.read_newest(0.1)
    assert got is not None and got[0].sequence == 8 and got[0].slot != 1 and int(got[1][0, 0]) == 8


def test_a_restarted_reader_releases_the_slot_a_killed_one_held() -> None:
    rx, tx = Pipe(duplex=False)
    store = MemoryFrameStore(slots=2, max_frame_bytes=32 * 24)
    CONTROL.pack_into(store.buffer, 0, 0)  # left behind by a reader killed while copying
    FrameReader(store, rx)
    writer = FrameWriter(store, tx)
    writer.write(frame(1), 0.0)
    writer.write(frame(2), 0.0)
    assert writer.held_skips == 0


@pytest.mark.skipif(os.name != "posix", reason="the one-read drain is the POSIX path")
def test_a_long_backlog_is_drained_in_one_call_to_the_newest() -> None:
    rx, tx = Pipe(duplex=False)
    store = MemoryFrameStore(slots=4, max_frame_bytes=32 * 24)
    writer, reader = FrameWriter(store, tx), FrameReader(store, rx)
    for value in range(1500):  # most of a 64 KiB pipe
        writer.write(frame(value % 256), float(value))
    assert writer.dropped == 0
    got = reader.read_newest(0.1)
    assert got is not None and got[0].sequence == 1500 and got[0].capture_ts == 1499.0
    assert reader.skipped == 1499 and not rx.poll(0)


@pytest.mark.skipif(os.name != "posix", reason="non-blocking pipe writes are POSIX-only")
def test_after_a_full_pipe_the_reader_recovers_with_the_next_frame() -> None:
    rx, tx = Pipe(duplex=False)
    store = MemoryFrameStore(slots=4, max_frame_bytes=32 * 24)
    writer, reader = FrameWriter(store, tx), FrameReader(store, rx)
    for _ in range(5000):  # the pipe fills; the newest records it holds point at long-overwritten slots
        writer.write(frame(1), 0.0)
    assert writer.dropped > 0
    assert reader.read_newest(0.05) is None and reader.torn == 1
    writer.write(frame(77), 0.0)
    got = reader.read_newest(0.1)
    assert got is not None and got[0].sequence == writer.sequence and int(got[1][0, 0]) == 77


def test_a_torn_frame_is_replaced_by_the_next_one_within_the_timeout() -> None:
    rx, tx = Pipe(duplex=False)
    store = MemoryFrameStore(slots=2, max_frame_bytes=32 * 24)
    writer, reader = FrameWriter(store, tx), FrameReader(store, rx)
    writer.write(frame(1), 0.0)
    stale = rx.recv_bytes()
    writer.write(frame(2), 0.0)
    writer.write(frame(3), 0.0)  # slot 0 again
    while rx.poll(0):
        rx.recv_bytes()
    tx.send_bytes(stale)
    later = threading.Timer(0.05, writer.write, args=(frame(4), 0.0))
    later.start()
    got = reader.read_newest(2.0)
    later.join()
    assert got is not None and got[0].sequence == 4 and int(got[1][0, 0]) == 4
    assert reader.torn == 1


@pytest.mark.skipif(os.name != "posix", reason="byte-level pipe reads are the POSIX path")
def test_reader_realigns_on_records_after_a_partial_read() -> None:
    rx, tx = Pipe(duplex=False)
    store = MemoryFrameStore(slots=4, max_frame_bytes=32 * 24)
    writer, reader = FrameWriter(store, tx), FrameReader(store, rx)
    writer.write(frame(1), 0.0)
    os.read(rx.fileno(), 10)  # someone consumed part of a record (e.g. a reader killed mid-recv_bytes)
    for value in (2, 3, 4):
        writer.write(frame(value), 0.0)
    got = reader.read_newest(0.1)
    assert got is not None and got[0].sequence == 4 and int(got[1][0, 0]) == 4
    assert reader.misframed == 26


@pytest.mark.skipif(os.name != "posix", reason="EOF on a POSIX pipe")
def test_reader_raises_eof_when_every_writer_end_is_closed() -> None:
    rx, tx = Pipe(duplex=False)
    reader = FrameReader(MemoryFrameStore(slots=2, max_frame_bytes=4), rx)
    tx.close()
    with pytest.raises(EOFError):
        reader.read_newest(0.1)


def test_writer_waits_until_the_reader_took_its_frame() -> None:
    rx, tx = Pipe(duplex=False)
    store = MemoryFrameStore(slots=4, max_frame_bytes=32 * 24)
    writer, reader = FrameWriter(store, tx), FrameReader(store, rx)
    writer.write(frame(1), capture_ts=0.0)
    assert writer.wait_taken(0.02) is False, "nobody read it: the wait gives up"
    assert writer.unwaited == 1
    assert reader.read_newest(0.1) is not None
    assert writer.wait_taken(0.0) is True, "taken: no wait at all"

    writer.write(frame(2), capture_ts=0.0)
    read_after_s = 0.05
    threading.Timer(read_after_s, reader.read_newest, (0.1,)).start()
    started = time.monotonic()
    assert writer.wait_taken(2.0) is True
    assert read_after_s * 0.8 <= time.monotonic() - started < 1.0
    assert writer.unwaited == 1


def test_a_newer_take_also_ends_the_wait_and_a_restarted_writer_waits_again() -> None:
    rx, tx = Pipe(duplex=False)
    store = MemoryFrameStore(slots=4, max_frame_bytes=32 * 24)
    writer, reader = FrameWriter(store, tx), FrameReader(store, rx)
    for value in range(5):
        writer.write(frame(value), capture_ts=0.0)
    got = reader.read_newest(0.1)
    assert got is not None and got[0].sequence == 5
    assert writer.wait_taken(0.0) is True
    # A camera process restarted counts from 0 again: the reader's old take must not end its waits.
    restarted = FrameWriter(store, tx)
    restarted.write(frame(9), capture_ts=0.0)
    assert restarted.wait_taken(0.01) is False
    assert reader.read_newest(0.1) is not None and restarted.wait_taken(0.0) is True

"""Every real camera source against a real counterpart: HTTP on loopback, a pty serial line, video files."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

import cv2
import numpy as np
import pytest

from app.camera.base import CapturedFrame, FrameSource, SourceError
from app.camera.discovery import list_cameras, list_video_devices
from app.camera.factory import make_source, open_source
from app.camera.mjpeg_http import MjpegHttpSource, forget_resolved_host, resolve_host
from app.camera.openiris_serial import OpenIrisSerialSource, default_baud
from app.camera.sources import SourceKind, parse_capture_source
from app.camera.uvc import UvcSource
from app.camera.video_file import VideoFileSource
from tests.fakes.jpeg import eye_like_image, frame_index_of, make_jpegs
from tests.fakes.openiris_http import FakeOpenIrisHttpServer, MdnsAdvertisement, StreamFaults
from tests.fakes.openiris_serial import FakeOpenIrisSerialCamera, SerialFaults

JPEGS = make_jpegs(64)
SMALL_JPEGS = make_jpegs(64, width=96, height=72)
VIDEO_SIZE = (96, 72)
FrameSourceT = TypeVar("FrameSourceT", bound=FrameSource)


def _read_frames(source: FrameSource, count: int, timeout_s: float = 2.0) -> list[CapturedFrame]:
    frames: list[CapturedFrame] = []
    while len(frames) < count:
        frame = source.read(timeout_s)
        assert frame is not None, f"no frame within {timeout_s} s after {len(frames)} frames"
        frames.append(frame)
    return frames


class Tracker(Protocol):
    def __call__(self, source: FrameSourceT, /) -> FrameSourceT: ...


@pytest.fixture
def track() -> Iterator[Tracker]:
    """Register a source to be closed after the test, whatever happens in it."""
    sources: list[FrameSource] = []

    def register(source: FrameSourceT) -> FrameSourceT:
        sources.append(source)
        return source

    yield register
    for source in sources:
        source.close()


def _wait_until(condition: Callable[[], bool], timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def _assert_counters_balance(source: MjpegHttpSource) -> None:
    c = source.counters
    assert c.received == c.decoded + c.corrupt + source.dropped_stale


@pytest.fixture
def camera() -> Iterator[FakeOpenIrisHttpServer]:
    with FakeOpenIrisHttpServer(JPEGS, fps=200) as server:
        yield server


# --- OpenIris Wi-Fi (MJPEG over HTTP) ---


def test_http_reads_openiris_stream_in_order(camera: FakeOpenIrisHttpServer, track: Tracker) -> None:
    source = track(MjpegHttpSource(camera.url))
    source.open()
    try:
        frames = _read_frames(source, 12)
    finally:
        source.close()
    assert [frame_index_of(f.gray) for f in frames] == list(range(12))
    assert all(f.gray.shape == (240, 240) and f.gray.dtype.name == "uint8" for f in frames)
    stamps = [f.capture_ts for f in frames]
    assert stamps == sorted(stamps) and stamps[-1] <= time.monotonic()
    assert source.last_device_ts_s is not None and source.last_device_ts_s > 1e9
    assert source.counters.decoded == 12 and source.counters.corrupt == 0
    _assert_counters_balance(source)


def test_http_raw_multipart_without_content_length(track: Tracker) -> None:
    faults = StreamFaults(chunked=False, content_length=False, timestamp=False)
    with FakeOpenIrisHttpServer(JPEGS, fps=200, faults=faults) as server:
        source = track(MjpegHttpSource(server.url))
        source.open()
        frames = _read_frames(source, 8)
        source.close()
    # Without Content-Length a part ends at the next boundary, so every frame still arrives whole.
    indices = [frame_index_of(f.gray) for f in frames]
    assert indices == sorted(indices) and len(set(indices)) == 8
    assert source.last_device_ts_s is None
    assert source.counters.corrupt == 0


@pytest.mark.parametrize(
    ("faults", "bad_index"),
    [
        (StreamFaults(corrupt_every=3), lambda i: i % 3 == 2),
        (StreamFaults(wrong_length_every=2), lambda i: i % 2 == 1),
        (StreamFaults(truncate_every=3), lambda i: i % 3 == 2),
        (StreamFaults(truncate_every=3, content_length=False), lambda i: i % 3 == 2),
    ],
    ids=["undecodable", "wrong-content-length", "truncated", "truncated-no-length"],
)
def test_http_bad_frames_are_dropped_and_counted(
    faults: StreamFaults, bad_index: Callable[[int], bool], track: Tracker
) -> None:
    with FakeOpenIrisHttpServer(JPEGS, fps=200, faults=faults) as server:
        source = track(MjpegHttpSource(server.url))
        source.open()
        frames = _read_frames(source, 10)
        source.close()
    indices = [frame_index_of(f.gray) for f in frames]
    assert not any(bad_index(i) for i in indices), indices
    assert indices == sorted(indices)
    assert source.counters.corrupt >= 3
    _assert_counters_balance(source)


def test_http_read_returns_none_on_timeout_then_raises_on_stall(track: Tracker) -> None:
    with FakeOpenIrisHttpServer(JPEGS, fps=200, faults=StreamFaults(stall_after_frames=2)) as server:
        source = track(MjpegHttpSource(server.url, stall_timeout_s=0.4))
        source.open()
        _read_frames(source, 2)
        started = time.monotonic()
        assert source.read(0.1) is None
        assert 0.08 <= time.monotonic() - started < 0.5
        with pytest.raises(SourceError, match="stalled"):
            source.read(5.0)
        assert time.monotonic() - started < 1.5
        source.close()


def test_http_early_close_delivers_what_arrived_then_raises(track: Tracker) -> None:
    with FakeOpenIrisHttpServer(JPEGS, fps=0, faults=StreamFaults(close_after_frames=3)) as server:
        source = track(MjpegHttpSource(server.url))
        source.open()
        _wait_until(lambda: server.frames_sent == 3)
        time.sleep(0.1)  # all three frames and the close are waiting in the socket
        frame = source.read(1.0)
        assert frame is not None and frame_index_of(frame.gray) == 2
        assert source.dropped_stale == 2
        with pytest.raises(SourceError, match="closed"):
            source.read(1.0)
        source.close()


def test_http_reconnects_after_the_camera_comes_back(camera: FakeOpenIrisHttpServer, track: Tracker) -> None:
    source = track(MjpegHttpSource(camera.url, connect_timeout_s=1.0))
    source.open()
    _read_frames(source, 3)
    camera.stop()
    with pytest.raises(SourceError):
        _read_frames(source, 100)
    source.close()
    with pytest.raises(SourceError, match="cannot connect"):
        source.open()
    camera.start()
    source.open()
    frames = _read_frames(source, 3)
    source.close()
    assert camera.connections == 2
    assert frame_index_of(frames[-1].gray) > 3


def test_http_silent_server_and_http_errors_fail_open(track: Tracker) -> None:
    with FakeOpenIrisHttpServer(JPEGS, faults=StreamFaults(silent=True)) as server:
        started = time.monotonic()
        with pytest.raises(SourceError, match="no HTTP response"):
            track(MjpegHttpSource(server.url, connect_timeout_s=0.3)).open()
        assert time.monotonic() - started < 1.0
        server.faults = StreamFaults(status=503)
        with pytest.raises(SourceError, match="HTTP 503"):
            track(MjpegHttpSource(server.url)).open()


def test_http_slow_reader_gets_the_newest_frame_not_a_backlog(track: Tracker) -> None:
    with FakeOpenIrisHttpServer(JPEGS, fps=250) as server:
        source = track(MjpegHttpSource(server.url))
        source.open()
        lags: list[int] = []
        for _ in range(5):
            time.sleep(0.1)  # a reader slower than the camera
            frame = source.read(1.0)
            assert frame is not None
            # The fake cycles through 64 frames, so the index is known modulo 64.
            lags.append((server.frames_sent - 1 - frame_index_of(frame.gray)) % len(JPEGS))
        source.close()
    assert source.dropped_stale >= 50
    assert all(lag <= 6 for lag in lags), lags  # a backlog would be ~25 frames per 0.1 s
    _assert_counters_balance(source)


def test_http_resolves_local_names_over_mdns(camera: FakeOpenIrisHttpServer, track: Tracker) -> None:
    name = f"etvr-test-{uuid.uuid4().hex[:8]}"
    with MdnsAdvertisement(name, camera.port):
        assert resolve_host(f"{name}.local", camera.port, mdns_interfaces=["127.0.0.1"]) == "127.0.0.1"
        source = track(MjpegHttpSource(f"http://{name}.local:{camera.port}/", mdns_interfaces=["127.0.0.1"]))
        source.open()
        assert len(_read_frames(source, 2)) == 2
        source.close()
    forget_resolved_host(f"{name}.local")
    with pytest.raises(SourceError, match="not found"):
        resolve_host(f"{name}-gone.local", 80, timeout_s=0.3, mdns_interfaces=["127.0.0.1"])


# --- OpenIris over USB serial (a pseudo-terminal) ---


@pytest.fixture
def serial_camera() -> Iterator[FakeOpenIrisSerialCamera]:
    with FakeOpenIrisSerialCamera(JPEGS, fps=200) as camera:
        yield camera


def test_serial_reads_packets_through_a_pty(serial_camera: FakeOpenIrisSerialCamera, track: Tracker) -> None:
    assert parse_capture_source(serial_camera.port).kind is SourceKind.SERIAL
    source = track(OpenIrisSerialSource(serial_camera.port))
    source.open()
    frames = _read_frames(source, 10)
    indices = [frame_index_of(f.gray) for f in frames]
    assert indices == sorted(indices) and len(set(indices)) == 10
    assert all(f.gray.shape == (240, 240) for f in frames)
    assert source.counters.corrupt == 0 and source.parser.counters.rejected == 0
    assert source.counters.received == source.counters.decoded + source.dropped_stale


def test_serial_survives_text_garbage_truncation_and_huge_lengths(track: Tracker) -> None:
    faults = SerialFaults(text_every=2, garbage_every=3, truncate_every=4, huge_length_every=5)
    with FakeOpenIrisSerialCamera(JPEGS, fps=200, faults=faults) as camera:
        source = track(OpenIrisSerialSource(camera.port))
        source.open()
        frames = _read_frames(source, 15)
    indices = [frame_index_of(f.gray) for f in frames]
    assert not any(i % 4 == 3 for i in indices), indices  # the truncated ones never come out
    assert indices == sorted(indices)
    assert source.counters.corrupt >= 4
    assert source.parser.counters.bytes_skipped > 0
    assert source.counters.received == source.counters.decoded + source.counters.corrupt + source.dropped_stale


def test_serial_slow_reader_gets_the_newest_packet(track: Tracker) -> None:
    # Small frames, so that the pty (about 64 KiB of buffer, like a USB CDC driver) can hold a backlog.
    with FakeOpenIrisSerialCamera(SMALL_JPEGS, fps=250) as camera:
        source = track(OpenIrisSerialSource(camera.port))
        source.open()
        lags: list[int] = []
        for _ in range(4):
            time.sleep(0.1)
            frame = source.read(1.0)
            assert frame is not None
            lag = (camera.frames_sent - 1 - frame_index_of(frame.gray)) % len(SMALL_JPEGS)
            # The fake counts a packet once its last byte is written, so the newest frame can be read a
            # moment before it is counted: one ahead, which the modulo turns into len - 1.
            lags.append(-1 if lag == len(SMALL_JPEGS) - 1 else lag)
    assert source.dropped_stale >= 40
    # A kept backlog would be 25 frames per 0.1 s sleep and growing; the tty hand-off may leave a few behind.
    assert all(lag < 20 for lag in lags), lags


def test_serial_unplugged_port_raises_and_cannot_be_reopened(track: Tracker) -> None:
    camera = FakeOpenIrisSerialCamera(JPEGS, fps=100).start()
    source = track(OpenIrisSerialSource(camera.port, stall_timeout_s=5.0))
    source.open()
    _read_frames(source, 2)
    camera.stop()
    with pytest.raises(SourceError, match="lost"):
        _read_frames(source, 50)
    source.close()
    with pytest.raises(SourceError, match="cannot open serial port"):
        source.open()


def test_serial_stall_raises(track: Tracker) -> None:
    with FakeOpenIrisSerialCamera(JPEGS, fps=100, faults=SerialFaults(stall_after_frames=2)) as camera:
        # Generous for a loaded machine: the fake's first frames must arrive before the stall window ends.
        source = track(OpenIrisSerialSource(camera.port, stall_timeout_s=1.0))
        source.open()
        _read_frames(source, 1)
        started = time.monotonic()
        with pytest.raises(SourceError, match="stalled"):
            for _ in range(60):
                source.read(0.1)
        assert time.monotonic() - started < 3.0


def test_serial_default_baud_per_platform() -> None:
    assert default_baud("linux") == 3_000_000 and default_baud("win32") == 3_000_000
    assert default_baud("darwin") == 115_200
    assert OpenIrisSerialSource("COM3", 0).baud == default_baud()
    assert OpenIrisSerialSource("COM3", 921_600).baud == 921_600


# --- Video files and UVC ---


@pytest.fixture(scope="module")
def video_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "eye.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 50.0, VIDEO_SIZE)
    assert writer.isOpened()
    for index in range(10):
        writer.write(cv2.cvtColor(eye_like_image(index, *VIDEO_SIZE), cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


def test_video_file_loops_unpaced(video_path: Path, track: Tracker) -> None:
    source = track(VideoFileSource(video_path, paced=False))
    source.open()
    assert source.fps == pytest.approx(50.0) and source.frame_count == 10
    frames = _read_frames(source, 25)
    assert [frame_index_of(f.gray) for f in frames] == [i % 10 for i in range(25)]
    assert frames[0].gray.shape == (VIDEO_SIZE[1], VIDEO_SIZE[0]) and frames[0].gray.dtype.name == "uint8"
    assert source.loops == 2 and source.counters.decoded == 25
    assert source.waits_for_reader, "unpaced: the camera process hands frames out as the tracker takes them"


def test_video_file_paced_at_its_own_fps(video_path: Path, track: Tracker) -> None:
    source = track(VideoFileSource(video_path, paced=True))
    source.open()
    assert not source.waits_for_reader
    assert source.read(1.0) is not None
    assert source.read(0.001) is None  # the next frame is due 20 ms after the first
    frames = _read_frames(source, 16)
    intervals = np.diff([f.capture_ts for f in frames])
    assert float(np.median(intervals)) == pytest.approx(0.02, abs=0.004)
    assert frames[-1].capture_ts - frames[0].capture_ts >= 15 * 0.02 * 0.9


def test_video_file_without_loop_ends(video_path: Path, track: Tracker) -> None:
    source = track(VideoFileSource(video_path, paced=False, loop=False))
    source.open()
    assert len(_read_frames(source, 10)) == 10
    assert source.read(0.01) is None and source.ended


def test_video_file_missing_or_not_a_video(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not found"):
        VideoFileSource(tmp_path / "nope.mp4").open()
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"this is not a video" * 10)
    with pytest.raises(SourceError, match="cannot open"):
        VideoFileSource(junk).open()


def test_uvc_missing_camera_fails_with_a_clear_message() -> None:
    with pytest.raises(SourceError, match="does not exist"):
        UvcSource("/dev/video63").open()
    with pytest.raises(SourceError, match="cannot open UVC camera 63"):
        UvcSource("63").open()


def test_uvc_reader_delivers_grey_frames(video_path: Path, track: Tracker) -> None:
    """No webcam here: the same cv2.VideoCapture path, driven by the FFmpeg backend on a file."""
    source = track(UvcSource(str(video_path), backends=[cv2.CAP_FFMPEG]))
    source.open()
    frames = _read_frames(source, 3)
    assert [frame_index_of(f.gray) for f in frames] == [0, 1, 2]
    assert source.mode.endswith("fps")


# --- The factory ---


def test_factory_opens_each_kind(
    camera: FakeOpenIrisHttpServer, serial_camera: FakeOpenIrisSerialCamera, video_path: Path, track: Tracker
) -> None:
    for capture_source, kind in [
        (camera.url, MjpegHttpSource),
        (serial_camera.port, OpenIrisSerialSource),
        (str(video_path), VideoFileSource),
    ]:
        source = track(open_source(capture_source, paced=False))
        assert isinstance(source, kind)
        assert source.read(2.0) is not None
    virtual = track(open_source("virtual", paced=False))
    frame = virtual.read(1.0)
    assert frame is not None and frame.truth is not None


def test_factory_refuses_nothing_and_nonsense() -> None:
    with pytest.raises(SourceError, match="no capture_source configured"):
        open_source("")
    with pytest.raises(SourceError, match="Accepted forms"):
        open_source("rtsp://camera/stream")
    assert isinstance(make_source("/dev/ttyACM0", serial_baud=115_200), OpenIrisSerialSource)


# --- Discovery ---


def test_discovery_finds_an_advertised_openiris_camera() -> None:
    name = f"etvr-disc-{uuid.uuid4().hex[:8]}"
    with MdnsAdvertisement(name, stream_port=8123, api_port=81):
        started = time.monotonic()
        cameras = list_cameras(mdns_timeout_s=1.0, mdns_interfaces=["127.0.0.1"])
        elapsed_s = time.monotonic() - started
    ours = [c for c in cameras if c.kind is SourceKind.HTTP_MJPEG and name in c.name]
    assert len(ours) == 1, cameras
    assert ours[0].capture_source == f"http://{name}.local:8123/"
    assert ours[0].details["api_port"] == "81" and "127.0.0.1" in ours[0].details["addresses"]
    assert parse_capture_source(ours[0].capture_source).kind is SourceKind.HTTP_MJPEG
    assert elapsed_s < 2.5


def test_discovery_without_multicast_lists_the_rest_and_does_not_raise() -> None:
    # An interface address this machine does not have: zeroconf cannot start, as on a host without multicast.
    cameras = list_cameras(mdns_timeout_s=0.3, mdns_interfaces=["203.0.113.7"])
    assert all(c.kind is not SourceKind.HTTP_MJPEG for c in cameras)
    for camera in cameras:
        assert parse_capture_source(camera.capture_source).kind is camera.kind


def test_discovery_lists_video_device_files(tmp_path: Path) -> None:
    dev, sysfs = tmp_path / "dev", tmp_path / "sys"
    for node in ("video10", "video0", "video1", "videox", "vhci"):
        (dev / node).parent.mkdir(parents=True, exist_ok=True)
        (dev / node).touch()
    (sysfs / "video0").mkdir(parents=True)
    (sysfs / "video0" / "name").write_text("OpenIris: UVC Camera\n")
    (sysfs / "video0" / "index").write_text("0\n")
    cameras = list_video_devices(dev, sysfs, platform="linux")
    assert [c.capture_source for c in cameras] == ["/dev/video0", "/dev/video1", "/dev/video10"]
    assert cameras[0].name == "OpenIris: UVC Camera (/dev/video0)" and cameras[0].details["node_index"] == "0"
    assert all(c.kind is SourceKind.UVC for c in cameras)
    assert list_video_devices(dev, sysfs, platform="win32") == []


def test_http_flood_is_capped_at_max_fps(track: Tracker) -> None:
    with FakeOpenIrisHttpServer(JPEGS, fps=0) as server:
        source = track(MjpegHttpSource(server.url, max_fps=100.0))
        source.open()
        started = time.monotonic()
        delivered = 0
        while time.monotonic() - started < 0.5:
            delivered += source.read(0.1) is not None
    # The in-process flood competes with the reader for the GIL, so only the cap is asserted tightly.
    assert 5 <= delivered <= 52
    assert source.dropped_stale > delivered  # the flood arrived; only the newest frames came out

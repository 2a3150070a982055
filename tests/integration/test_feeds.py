"""MJPEG previews over real HTTP: format, ROI, the offline picture, and no encoding without a viewer."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import httpx
import numpy as np
import numpy.typing as npt
import pytest

from tests.support.service import Service, wait_until

VIRTUAL_FRAME_PX = 240  # the virtual eye's frame is 240 x 240
ROI = {"roi_x": 40, "roi_y": 60, "roi_w": 120, "roi_h": 100}
OFFLINE_AFTER_S = 1.0
CONNECT_TIMEOUT_S = 20.0


@dataclass
class Part:
    headers: dict[str, str]
    jpeg: bytes

    @property
    def sequence(self) -> int:
        return int(self.headers["x-sequence"])

    @property
    def offline(self) -> bool:
        return self.headers.get("x-preview") == "offline"

    def image(self) -> npt.NDArray[np.uint8]:
        decoded = cv2.imdecode(np.frombuffer(self.jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
        assert decoded is not None, "the part is not a decodable JPEG"
        return np.asarray(decoded, dtype=np.uint8)


class MjpegReader:
    """Reads `multipart/x-mixed-replace` parts from an open httpx stream, checking the framing as it goes."""

    def __init__(self, response: httpx.Response, boundary: str) -> None:
        self._chunks = response.iter_bytes()
        self._buffer = b""
        self._delimiter = f"--{boundary}\r\n".encode()

    def _fill(self) -> None:
        self._buffer += next(self._chunks)

    def next_part(self) -> Part:
        while b"\r\n\r\n" not in self._buffer:
            self._fill()
        assert self._buffer.startswith(self._delimiter), self._buffer[:80]
        head, _, rest = self._buffer.partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode("ascii").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        assert headers["content-type"] == "image/jpeg"
        length = int(headers["content-length"])
        self._buffer = rest
        while len(self._buffer) < length + 2:
            self._fill()
        jpeg, trailer = self._buffer[:length], self._buffer[length : length + 2]
        assert trailer == b"\r\n"
        self._buffer = self._buffer[length + 2 :]
        return Part(headers, jpeg)


@dataclass
class FeedService:
    service: Service
    virtual_uuid: str
    sourceless_uuid: str

    def url(self, uuid: str, kind: str) -> str:
        return f"{self.service.url}/etvr/feed/{uuid}/{kind}"


@pytest.fixture(scope="module")
def feeds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeedService]:
    with Service(tmp_path_factory.mktemp("feeds") / "tracker-config.json") as service:
        config = {
            "trackers": [
                {"name": "L", "tracker_position": "LEFT_EYE", "camera": {"capture_source": "virtual", **ROI}},
                {"name": "R", "tracker_position": "RIGHT_EYE", "camera": {"capture_source": ""}},
            ]
        }
        trackers = service.post("/etvr/config", json=config).json()["trackers"]
        assert service.get("/etvr/start").json() is True

        def connected() -> bool:
            status = service.get("/etvr/trackers/status").json()
            return any(t["camera_state"] == "connected" and t["fps"] > 0 for t in status)

        assert wait_until(connected, CONNECT_TIMEOUT_S), service.log()
        yield FeedService(service, trackers[0]["uuid"], trackers[1]["uuid"])


@contextlib.contextmanager
def open_stream(client: httpx.Client, url: str) -> Iterator[MjpegReader]:
    with client.stream("GET", url) as response:
        assert response.status_code == 200
        content_type = response.headers["content-type"]
        assert content_type == "multipart/x-mixed-replace; boundary=frame"
        assert response.headers["cache-control"].startswith("no-store")
        yield MjpegReader(response, "frame")


def first_frame(feeds: FeedService, uuid: str, kind: str) -> tuple[Part, float]:
    """The first non-offline part of a fresh stream and how long it took."""
    with httpx.Client(timeout=10.0) as client:
        started = time.monotonic()
        with open_stream(client, feeds.url(uuid, kind)) as reader:
            while True:
                part = reader.next_part()
                if not part.offline:
                    return part, time.monotonic() - started


def test_unknown_tracker_is_404_and_unknown_kind_is_422(feeds: FeedService) -> None:
    assert feeds.service.get("/etvr/feed/no-such-tracker/camera").status_code == 404
    assert feeds.service.get("/etvr/feed/no-such-tracker/algorithm").status_code == 404
    assert feeds.service.get(f"/etvr/feed/{feeds.virtual_uuid}/thermal").status_code == 422


def test_camera_feed_is_mjpeg_of_the_whole_rotated_frame(feeds: FeedService) -> None:
    part, elapsed_s = first_frame(feeds, feeds.virtual_uuid, "camera")
    assert elapsed_s < 2.0, "the first image of a running camera came late"
    image = part.image()
    assert image.shape == (VIRTUAL_FRAME_PX, VIRTUAL_FRAME_PX, 3)
    assert float(part.headers["x-timestamp"]) > 0
    # The ROI is drawn in colour on the grey frame: its left edge column is coloured, the rest is not.
    x0, y0 = ROI["roi_x"], ROI["roi_y"]
    edge = image[y0 + 5 : y0 + ROI["roi_h"] - 5, x0].astype(int)
    inside = image[y0 + 5 : y0 + ROI["roi_h"] - 5, x0 + 20].astype(int)
    assert np.mean(np.abs(edge[:, 2] - edge[:, 0])) > 60, "no ROI rectangle on the camera preview"
    assert np.mean(np.abs(inside[:, 2] - inside[:, 0])) < 25


def test_algorithm_feed_shows_the_roi(feeds: FeedService) -> None:
    part, _ = first_frame(feeds, feeds.virtual_uuid, "algorithm")
    assert part.image().shape == (ROI["roi_h"], ROI["roi_w"], 3)


def test_offline_picture_after_a_second_without_frames(feeds: FeedService) -> None:
    with httpx.Client(timeout=10.0) as client:
        started = time.monotonic()
        with open_stream(client, feeds.url(feeds.sourceless_uuid, "camera")) as reader:
            part = reader.next_part()
            waited_s = time.monotonic() - started
            assert part.offline
            assert OFFLINE_AFTER_S * 0.9 <= waited_s < OFFLINE_AFTER_S + 1.0
            assert part.image().shape == (240, 320, 3)
            again = reader.next_part()  # repeated, so a browser shows it and a gone client is noticed
            assert again.offline and again.jpeg == part.jpeg


def read_sequences(url: str, duration_s: float, out: list[int]) -> None:
    with httpx.Client(timeout=10.0) as client:
        with open_stream(client, url) as reader:
            deadline = time.monotonic() + duration_s
            while time.monotonic() < deadline:
                part = reader.next_part()
                if not part.offline:
                    out.append(part.sequence)


def test_no_encoding_without_viewers_and_one_encode_for_many(feeds: FeedService) -> None:
    url = feeds.url(feeds.virtual_uuid, "camera")
    first: list[int] = []
    read_sequences(url, 0.5, first)
    assert first, "no image in half a second"
    # Nobody watches for a second: the preview sequence (one step per encode) must stand still.
    time.sleep(1.0)
    viewers: list[list[int]] = [[], []]
    threads = [threading.Thread(target=read_sequences, args=(url, 1.5, seen)) for seen in viewers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    resumed_at = min(min(seen) for seen in viewers)
    assert resumed_at - max(first) <= 5, f"encoded while nobody watched: {max(first)} -> {resumed_at}"
    # Two viewers share one encode: they see the same images, at no more than preview_fps (30) together.
    shared = set(viewers[0]) & set(viewers[1])
    assert len(shared) >= 0.8 * min(len(v) for v in viewers)
    span = max(max(v) for v in viewers) - resumed_at
    assert 15 <= span <= 1.5 * 30 * 1.15, f"{span} encodes in 1.5 s for two viewers"


def test_a_stream_follows_the_tracker_through_stop_and_start(feeds: FeedService) -> None:
    """Runs last in this module: it restarts tracking. A restarted tracker has fresh preview slots with
    their own viewer counts; an open stream must register with them, or it would stay offline."""
    service = feeds.service
    with httpx.Client(timeout=10.0) as client:
        with open_stream(client, feeds.url(feeds.virtual_uuid, "algorithm")) as reader:
            assert not reader.next_part().offline, "a running tracker's stream began offline"
            assert service.get("/etvr/stop").json() is True
            while not reader.next_part().offline:
                pass
            assert service.get("/etvr/start").json() is True
            deadline = time.monotonic() + CONNECT_TIMEOUT_S
            while reader.next_part().offline:
                assert time.monotonic() < deadline, "the stream stayed offline after tracking restarted"
            assert reader.next_part().image().shape == (ROI["roi_h"], ROI["roi_w"], 3)

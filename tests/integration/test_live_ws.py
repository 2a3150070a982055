"""The live WebSocket `/etvr/ws` against the real service: schema, rate, events, and slow clients."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import statistics
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from websockets.asyncio.client import ClientConnection, connect

from app.api.routes.live import Outbox
from app.api.schemas import LiveConfigMessage, LiveHelloMessage, LiveResultMessage, LiveStateMessage
from tests.support.service import Service, wait_until

CONNECT_TIMEOUT_S = 20.0
RATE_LIMIT_HZ = 60.0


@dataclass
class LiveService:
    service: Service
    virtual_uuid: str
    sourceless_uuid: str

    @property
    def ws_url(self) -> str:
        return self.service.url.replace("http://", "ws://") + "/etvr/ws"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    with Service(tmp_path_factory.mktemp("live") / "tracker-config.json") as service:
        config = {
            "trackers": [
                {"name": "L", "tracker_position": "LEFT_EYE", "camera": {"capture_source": "virtual"}},
                {"name": "R", "tracker_position": "RIGHT_EYE", "camera": {"capture_source": ""}},
            ]
        }
        trackers = service.post("/etvr/config", json=config).json()["trackers"]
        assert service.get("/etvr/start").json() is True

        def tracking() -> bool:
            status = service.get("/etvr/trackers/status").json()
            return any(t["latest"] is not None for t in status)

        assert wait_until(tracking, CONNECT_TIMEOUT_S), service.log()
        yield LiveService(service, trackers[0]["uuid"], trackers[1]["uuid"])


async def receive_for(ws: ClientConnection, duration_s: float) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + duration_s
    while (left_s := deadline - time.monotonic()) > 0:
        try:
            messages.append(json.loads(await asyncio.wait_for(ws.recv(), left_s)))
        except TimeoutError:
            break
    return messages


def test_plain_get_explains_the_websocket(live: LiveService) -> None:
    response = live.service.get("/etvr/ws")
    assert response.status_code == 426
    assert "WebSocket" in response.json()["detail"]
    schemas = live.service.get("/openapi.json").json()["components"]["schemas"]
    assert {"LiveHelloMessage", "LiveResultMessage", "LiveStateMessage", "LiveErrorMessage"} <= set(schemas)


def test_hello_then_results_at_up_to_60_hz(live: LiveService) -> None:
    async def scenario() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        async with connect(live.ws_url) as ws:
            hello = json.loads(await ws.recv())
            return hello, await receive_for(ws, 2.0)

    hello, messages = asyncio.run(scenario())
    parsed_hello = LiveHelloMessage.model_validate(hello)
    assert parsed_hello.running is True and parsed_hello.rate_hz == RATE_LIMIT_HZ
    assert {t.uuid for t in parsed_hello.trackers} >= {live.virtual_uuid, live.sourceless_uuid}
    assert [t["uuid"] for t in parsed_hello.config["trackers"]][:2] == [live.virtual_uuid, live.sourceless_uuid]

    results = [LiveResultMessage.model_validate(m) for m in messages if m["type"] == "result"]
    assert {r.uuid for r in results} == {live.virtual_uuid}, "results only for the tracker that has frames"
    sequences = [r.sequence for r in results]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences), "repeated or reordered frames"
    assert 40 <= len(results) <= 2.0 * RATE_LIMIT_HZ * 1.1, f"{len(results)} results in 2 s"
    arrival_span_s = results[-1].capture_ts - results[0].capture_ts
    assert arrival_span_s > 1.5
    assert statistics.pstdev(r.gaze_x for r in results) > 0.02, "gaze did not move"
    found = [r for r in results if r.pupil_x is not None and r.pupil_y is not None]
    assert len(found) > 0.8 * len(results)
    for r in found:
        assert r.pupil_x is not None and r.pupil_y is not None
        assert 0 <= r.pupil_x < r.frame_w and 0 <= r.pupil_y < r.frame_h
    for r in results:
        assert r.capture_ts <= r.processed_ts and r.latency_ms >= 0
        assert -1.0 <= r.gaze_x <= 1.0 and -1.0 <= r.gaze_y <= 1.0 and 0.0 <= r.openness <= 1.0
        assert r.camera_state == "connected" and r.calibrating is False and r.calibration_progress is None


def test_state_error_and_config_events(live: LiveService) -> None:
    async def scenario() -> list[dict[str, Any]]:
        async with connect(live.ws_url) as ws:
            early = await receive_for(ws, 0.6)
            patch = {"osc": {"sending_port": 9123}}
            assert await asyncio.to_thread(live.service.post, "/etvr/config", json=patch) is not None
            return early + await receive_for(ws, 1.5)

    messages = asyncio.run(scenario())
    states = [LiveStateMessage.model_validate(m) for m in messages if m["type"] == "state"]
    sourceless = [s for s in states if s.uuid == live.sourceless_uuid]
    assert sourceless and sourceless[-1].camera_state == "no_source" and sourceless[-1].running
    errors = [m for m in messages if m["type"] == "error" and m["uuid"] == live.sourceless_uuid]
    assert errors and errors[0]["source"] == "camera" and "capture_source" in errors[0]["message"]
    configs = [LiveConfigMessage.model_validate(m) for m in messages if m["type"] == "config"]
    assert configs and configs[-1].config["osc"]["sending_port"] == 9123


class StalledClient:
    """A WebSocket client on a bare socket that can stop reading entirely, as a frozen app does (a client
    library keeps reading into its own memory, which would hide the stall from the service)."""

    def __init__(self, port: int, receive_buffer_bytes: int = 4096) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer_bytes)
        self.sock.settimeout(5.0)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /etvr/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        self.buffer = b""
        self._need_until(b"\r\n\r\n")
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head

    def _need_until(self, marker: bytes) -> None:
        while marker not in self.buffer:
            self.buffer += self.sock.recv(65536)

    def _need(self, count: int) -> None:
        while len(self.buffer) < count:
            self.buffer += self.sock.recv(65536)

    def recv_json(self) -> dict[str, Any]:
        """The next text message (server frames are unmasked and, here, never fragmented)."""
        while True:
            self._need(2)
            opcode, length, offset = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F, 2
            if length == 126:
                self._need(4)
                length, offset = struct.unpack(">H", self.buffer[2:4])[0], 4
            elif length == 127:
                self._need(10)
                length, offset = struct.unpack(">Q", self.buffer[2:10])[0], 10
            self._need(offset + length)
            payload, self.buffer = self.buffer[offset : offset + length], self.buffer[offset + length :]
            if opcode == 1:
                message: dict[str, Any] = json.loads(payload)
                return message

    def close(self) -> None:
        self.sock.close()


def test_stalled_client_never_slows_the_service_or_other_clients(live: LiveService) -> None:
    """A client that stops reading must not delay a client that keeps reading, nor the REST API; when it
    reads again it reaches current data at once. (What it then skips is bounded by the sockets' buffers:
    the service itself keeps one pending message per stream and client, see the Outbox test.)"""
    pause_s = 2.0
    port = urlsplit(live.service.url).port
    assert port is not None
    stalled = StalledClient(port)
    try:

        async def read_fast() -> int:
            async with connect(live.ws_url) as fast:
                messages = await receive_for(fast, pause_s)
            return sum(m["type"] == "result" for m in messages)

        started = time.monotonic()
        fast_results = asyncio.run(read_fast())
        rest_started = time.monotonic()
        assert live.service.get("/etvr/status").json() is True
        rest_latency_s = time.monotonic() - rest_started
        resumed_at = time.monotonic()
        stale = 0
        while True:
            message = stalled.recv_json()
            if message["type"] == "result" and resumed_at - message["capture_ts"] < 0.5:
                break
            stale += message["type"] == "result"
        catch_up_s = time.monotonic() - resumed_at
    finally:
        stalled.close()
    assert fast_results >= 0.6 * pause_s * 50, f"the reading client got only {fast_results} results"
    assert rest_latency_s < 0.5
    assert catch_up_s < 1.0, f"{catch_up_s:.2f} s to reach current data"
    assert stale <= (resumed_at - started) * RATE_LIMIT_HZ, "more results than frames: duplicated messages"


def test_outbox_keeps_only_the_newest_message_per_key() -> None:
    async def scenario() -> tuple[list[str], int]:
        outbox = Outbox()
        for sequence in range(1000):
            outbox.put("result:L", f"L{sequence}")
            outbox.put("result:R", f"R{sequence}")
        outbox.put("config", "C")
        return await outbox.take(), outbox.replaced

    messages, replaced = asyncio.run(scenario())
    assert messages == ["L999", "R999", "C"]
    assert replaced == 2 * 999


def test_token_guards_the_dashboard_its_assets_and_the_socket(tmp_path_factory: pytest.TempPathFactory) -> None:
    """With a token, the page's own links carry it: the dashboard works from `/?token=…` alone."""
    token = "s3cret-token"
    config_path = tmp_path_factory.mktemp("token") / "tracker-config.json"
    with Service(config_path, args=["--token", token], ready_path=f"/etvr/status?token={token}") as service:
        service.client.headers["Authorization"] = f"Bearer {token}"
        assert service.get("/etvr/status").status_code == 200
        page = service.client.get("/", params={"token": token}, headers={"Authorization": ""})
        assert page.status_code == 200
        assert f'src="assets/dashboard.js?token={token}"' in page.text
        assert f'href="assets/dashboard.css?token={token}"' in page.text
        bare = {"Authorization": ""}
        service.client.cookies.clear()  # a ?token= answer also sets a cookie: test the bare request without it
        assert service.client.get("/assets/dashboard.js", headers=bare).status_code == 401
        script = service.client.get("/assets/dashboard.js", params={"token": token}, headers=bare)
        assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
        assert service.client.get("/assets/..%2Fapp%2Fpaths.py", params={"token": token}).status_code == 404

        async def hello(url: str) -> str:
            async with connect(url) as ws:
                message: dict[str, Any] = json.loads(await ws.recv())
                return str(message["type"])

        ws_url = service.url.replace("http://", "ws://") + "/etvr/ws"
        assert asyncio.run(hello(f"{ws_url}?token={token}")) == "hello"
        with pytest.raises(Exception, match=r"1008|rejected|403"):
            asyncio.run(hello(ws_url))

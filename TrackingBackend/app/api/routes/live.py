"""Live data over a WebSocket, `/etvr/ws`: per-tracker results at up to 60 Hz, and events.

One hub task polls the shared result board while at least one client is connected (no client, no
work), turns what changed into JSON once, and hands it to every client's outbox. An outbox keeps only
the newest message per stream (a tracker's results, its state, the config...), so a slow client skips
to the newest data and never makes the service queue or wait. The schema is in docs/live-data.md and
in the models `Live*Message` of app.api.schemas.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Response, WebSocket, WebSocketDisconnect
from pydantic import BaseModel

from app import __version__
from app.api.context import ServiceContext
from app.api.schemas import (
    LiveCalibrationMessage,
    LiveConfigMessage,
    LiveErrorMessage,
    LiveHelloMessage,
    LiveProcessState,
    LiveResultMessage,
    LiveServiceMessage,
    LiveStateMessage,
)
from app.config.models import EtvrConfig

logger = logging.getLogger(__name__)
router = APIRouter(tags=["live"])

LIVE_RATE_HZ = 60.0
STATUS_INTERVAL_S = 0.25
STATE_HEARTBEAT_S = 1.0
# A client that cannot take a single message for this long is gone or stuck: close it.
SEND_TIMEOUT_S = 10.0
HUB_KEY = "live_hub"


class Outbox:
    """A client's unsent messages, only the newest per key: a slow reader skips, never piles up."""

    def __init__(self) -> None:
        self._pending: dict[str, str] = {}
        self._ready = asyncio.Event()
        self.replaced = 0

    def put(self, key: str, text: str) -> None:
        if self._pending.pop(key, None) is not None:
            self.replaced += 1
        self._pending[key] = text
        self._ready.set()

    def pending(self) -> int:
        return len(self._pending)

    async def take(self) -> list[str]:
        """Wait for messages, then return all pending ones (oldest key first) and clear them."""
        await self._ready.wait()
        self._ready.clear()
        messages = list(self._pending.values())
        self._pending.clear()
        return messages


def _dump(message: BaseModel) -> str:
    return json.dumps(message.model_dump(mode="json"), separators=(",", ":"))


def state_message(status: dict[str, Any]) -> LiveStateMessage:
    processes = {
        kind: LiveProcessState(
            state=str(info.get("state", "stopped")),
            alive=bool(info.get("alive", False)),
            restarts=int(info.get("restarts", 0)),
            last_error=info.get("last_error"),
        )
        for kind, info in status["processes"].items()
    }
    return LiveStateMessage(
        uuid=status["uuid"],
        name=status["name"],
        tracker_position=status["tracker_position"],
        enabled=status["enabled"],
        running=status["running"],
        camera_state=status["camera_state"],
        fps=float(status["fps"] or 0.0),
        last_error=status["last_error"],
        notice=status.get("notice"),
        processes=processes,
    )


def result_message(
    record: dict[str, Any], tracker_uuid: str, position: str, camera_state: str, roi: tuple[int, int]
) -> LiveResultMessage:
    progress = record["calibration_progress"]
    calibrating = progress is not None and progress >= 0
    return LiveResultMessage(
        uuid=tracker_uuid,
        tracker_position=position,
        camera_state=camera_state,
        sequence=int(record["sequence"]),
        capture_ts=record["capture_ts"],
        processed_ts=record["processed_ts"],
        latency_ms=record["latency_ms"],
        fps=record["fps"],
        frame_w=int(record["frame_w"]),
        frame_h=int(record["frame_h"]),
        roi_x=roi[0],
        roi_y=roi[1],
        pupil_x=record["pupil_x"],
        pupil_y=record["pupil_y"],
        ellipse_w=record["ellipse_w"],
        ellipse_h=record["ellipse_h"],
        ellipse_angle=record["ellipse_angle"],
        confidence=record["confidence"],
        gaze_x=record["gaze_x"],
        gaze_y=record["gaze_y"],
        openness=record["openness"],
        blink=bool(record["blink"]),
        dilation=record["dilation"],
        widen=record["widen"],
        squeeze=record["squeeze"],
        calibrating=calibrating,
        calibration_progress=min(1.0, progress) if calibrating else None,
    )


def _config_message(context: ServiceContext) -> LiveConfigMessage:
    store = context.store
    return LiveConfigMessage(revision=store.revision, config=store.config.model_dump(mode="json"))


def _all_statuses(context: ServiceContext, config: EtvrConfig) -> list[dict[str, Any]]:
    return [context.supervisor.tracker_status(tracker) for tracker in config.trackers]


def _state_key(state: LiveStateMessage) -> tuple[Any, ...]:
    processes = tuple((k, p.state, p.alive, p.restarts) for k, p in sorted(state.processes.items()))
    return (state.running, state.enabled, state.camera_state, state.last_error, state.notice, state.name, processes)


@dataclass
class TrackerWatch:
    """What the hub last told clients about one tracker."""

    sequence: int | None = None
    calibrating: bool = False
    state_key: tuple[Any, ...] | None = None
    state_sent_at: float = 0.0
    errors: dict[str, str | None] = field(default_factory=dict)
    camera_state: str = "stopped"


class LiveHub:
    """Fans the service's live data out to the connected clients."""

    def __init__(self, context: ServiceContext) -> None:
        self.context = context
        self.outboxes: set[Outbox] = set()
        self._task: asyncio.Task[None] | None = None

    def add(self, outbox: Outbox) -> None:
        self.outboxes.add(outbox)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="live-hub")

    async def remove(self, outbox: Outbox) -> None:
        self.outboxes.discard(outbox)
        if not self.outboxes and self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def broadcast(self, key: str, message: BaseModel) -> None:
        text = _dump(message)
        for outbox in self.outboxes:
            outbox.put(key, text)

    async def _run(self) -> None:
        try:
            await self._loop()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("live data hub failed")

    async def _loop(self) -> None:
        context = self.context
        store, supervisor = context.store, context.supervisor
        watches: dict[str, TrackerWatch] = {}
        revision = store.revision
        running = supervisor.running
        problems = len(store.problems)
        persist_error = store.persist_error
        status_at = 0.0
        period_s = 1.0 / LIVE_RATE_HZ
        next_tick = time.monotonic()
        while True:
            now = time.monotonic()
            config = store.config
            if now - status_at >= STATUS_INTERVAL_S:
                status_at = now
                # tracker_status asks the status manager process: keep that off the event loop.
                statuses = await anyio.to_thread.run_sync(_all_statuses, context, config)
                self._publish_states(statuses, watches, now)
            for tracker in config.trackers:
                watch = watches.setdefault(tracker.uuid, TrackerWatch())
                record = supervisor.latest_result(tracker.uuid)
                if record is None or int(record["sequence"]) == watch.sequence:
                    continue
                watch.sequence = int(record["sequence"])
                roi = (tracker.camera.roi_x, tracker.camera.roi_y)
                message = result_message(record, tracker.uuid, tracker.tracker_position.value, watch.camera_state, roi)
                self.broadcast(f"result:{tracker.uuid}", message)
                if message.calibrating != watch.calibrating:
                    watch.calibrating = message.calibrating
                    status = "started" if message.calibrating else "finished"
                    self.broadcast(
                        f"calibration:{tracker.uuid}", LiveCalibrationMessage(uuid=tracker.uuid, status=status)
                    )
            if supervisor.running != running:
                running = supervisor.running
                self.broadcast("service", LiveServiceMessage(running=running))
            if store.revision != revision:
                revision = store.revision
                self.broadcast("config", _config_message(context))
            if len(store.problems) > problems:
                for problem in store.problems[problems:]:
                    self.broadcast(
                        "error:config", LiveErrorMessage(uuid=None, source="config", message=problem.message)
                    )
                problems = len(store.problems)
            if store.persist_error != persist_error:
                persist_error = store.persist_error
                if persist_error:
                    self.broadcast("error:persist", LiveErrorMessage(uuid=None, source="config", message=persist_error))
            next_tick = max(next_tick + period_s, time.monotonic())
            await asyncio.sleep(next_tick - time.monotonic())

    def _publish_states(self, statuses: list[dict[str, Any]], watches: dict[str, TrackerWatch], now: float) -> None:
        for status in statuses:
            state = state_message(status)
            watch = watches.setdefault(state.uuid, TrackerWatch())
            watch.camera_state = state.camera_state
            key = _state_key(state)
            if key != watch.state_key or now - watch.state_sent_at >= STATE_HEARTBEAT_S:
                watch.state_key, watch.state_sent_at = key, now
                self.broadcast(f"state:{state.uuid}", state)
            for kind, process in state.processes.items():
                if process.last_error != watch.errors.get(kind):
                    watch.errors[kind] = process.last_error
                    if process.last_error:
                        error = LiveErrorMessage(uuid=state.uuid, source=kind, message=process.last_error)
                        self.broadcast(f"error:{state.uuid}:{kind}", error)


def _hub(context: ServiceContext) -> LiveHub:
    hub = context.extras.get(HUB_KEY)
    if not isinstance(hub, LiveHub):
        hub = LiveHub(context)
        context.extras[HUB_KEY] = hub
    return hub


async def _hello(context: ServiceContext) -> LiveHelloMessage:
    config = context.store.config
    statuses = await anyio.to_thread.run_sync(_all_statuses, context, config)
    return LiveHelloMessage(
        version=__version__,
        rate_hz=LIVE_RATE_HZ,
        running=context.supervisor.running,
        revision=context.store.revision,
        config=config.model_dump(mode="json"),
        trackers=[state_message(s) for s in statuses],
    )


async def _send_loop(websocket: WebSocket, outbox: Outbox) -> None:
    while True:
        for text in await outbox.take():
            await asyncio.wait_for(websocket.send_text(text), SEND_TIMEOUT_S)


async def _receive_loop(websocket: WebSocket) -> None:
    """Incoming messages are not used (yet); reading them is how a disconnect is noticed."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return


@router.websocket("/etvr/ws")
async def live_socket(websocket: WebSocket) -> None:
    context: ServiceContext = websocket.app.state.context
    await websocket.accept()
    outbox = Outbox()
    outbox.put("hello", _dump(await _hello(context)))
    hub = _hub(context)
    hub.add(outbox)
    sender = asyncio.create_task(_send_loop(websocket, outbox))
    receiver = asyncio.create_task(_receive_loop(websocket))
    try:
        done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        if sender in done and not sender.cancelled() and sender.exception() is not None:
            logger.info("live client dropped: %r", sender.exception())
            with contextlib.suppress(Exception):
                await websocket.close(code=1011)
    finally:
        for task in (sender, receiver):
            task.cancel()
        await asyncio.gather(sender, receiver, return_exceptions=True)
        await hub.remove(outbox)


LIVE_DESCRIPTION = """\
**This path is a WebSocket**: connect with `ws://127.0.0.1:8000/etvr/ws` (add `?token=` when the service
requires a token). A plain GET answers 426. Every message is one JSON object with a `type`:

| type | when | content |
|---|---|---|
| `hello` | first message | version, `rate_hz`, `running`, config `revision`, the whole `config`, \
each tracker's `state` |
| `result` | each new frame of a running tracker, at most 60 a second per tracker | frame `sequence`, `capture_ts`, \
pupil position in the tracked frame's pixels (`pupil_x/y`, null when not found; the ROI offset `roi_x/y`), ellipse, \
`confidence`, `gaze_x/y` in [-1, 1], `openness`, `blink`, `dilation`, `widen`, `squeeze`, `fps`, `latency_ms`, \
`camera_state`, `calibrating`, `calibration_progress` (0..1, null when not calibrating) |
| `state` | a tracker's state changed, and once a second | `running`, `camera_state`, `fps`, `last_error`, `processes` |
| `calibration` | a calibration `started` or `finished` | `uuid`, `status` |
| `error` | a worker reports a new error; a config file problem | `uuid` (null: service-wide), `source`, `message` |
| `service` | tracking started or stopped | `running` |
| `config` | the config changed (API, hand edit, calibration stored) | `revision`, the whole `config` |

A client that reads slowly is never queued for: it gets the newest message of each kind when it reads
again (older `result`s of the same tracker are skipped). Timestamps are the service's monotonic clock in
seconds. The full schema: docs/live-data.md, and the models `Live*Message` below.
"""


LiveMessage = (
    LiveHelloMessage
    | LiveResultMessage
    | LiveStateMessage
    | LiveCalibrationMessage
    | LiveErrorMessage
    | LiveServiceMessage
    | LiveConfigMessage
)


class UpgradeRequiredResponse(BaseModel):
    detail: str


@router.get(
    "/etvr/ws",
    summary="Live data (WebSocket): per-tracker results at up to 60 Hz, and events",
    description=LIVE_DESCRIPTION,
    status_code=426,
    response_model=UpgradeRequiredResponse,
    responses={
        426: {"description": "Not a WebSocket request."},
        "default": {"model": LiveMessage, "description": "Over the WebSocket: the messages, one JSON object each."},
    },
)
def live_socket_help(response: Response) -> UpgradeRequiredResponse:
    response.headers["Upgrade"] = "websocket"
    return UpgradeRequiredResponse(
        detail="this is a WebSocket endpoint: connect with ws://…/etvr/ws (see /docs and docs/live-data.md)"
    )

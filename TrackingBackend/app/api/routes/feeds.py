"""MJPEG previews (CONTRACTS §1): `/etvr/feed/{uuid}/camera` and `/etvr/feed/{uuid}/algorithm`.

A stream asks the tracker's workers to encode its preview only while it is open (`watching_preview`),
so a service nobody watches spends no CPU on previews, and any number of viewers share one encode.
Each stream polls the preview slot at `preview_fps` and sends only images it has not sent yet; after
`OFFLINE_AFTER_S` without a new image it sends a "camera offline" picture (rendered once, cached).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Literal

import anyio.to_thread
from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import StreamingResponse

from app.api.context import ServiceContext, get_context
from app.runtime.previews import PreviewFrame
from app.runtime.supervisor import Supervisor

router = APIRouter(prefix="/etvr/feed", tags=["previews"])
Context = Annotated[ServiceContext, Depends(get_context)]
PreviewKind = Literal["camera", "algorithm"]

BOUNDARY = "frame"
OFFLINE_AFTER_S = 1.0
# While offline the picture is re-sent now and then: a browser shows a part once the next begins,
# and a write is how a vanished client is noticed.
OFFLINE_REPEAT_S = 1.0
OFFLINE_SIZE_PX = (320, 240)
STREAM_HEADERS = {"Cache-Control": "no-store, no-cache, must-revalidate", "X-Accel-Buffering": "no"}


@functools.cache
def offline_jpeg() -> bytes:
    """A dark 'camera offline' picture, drawn once."""
    # Imported here, not at the top: the main process loads them only if a viewer ever sees this picture.
    import cv2
    import numpy as np

    width, height = OFFLINE_SIZE_PX
    image = np.full((height, width, 3), 28, dtype=np.uint8)
    cv2.rectangle(image, (0, 0), (width - 1, height - 1), (70, 70, 70), 2)
    text = "camera offline"
    font = cv2.FONT_HERSHEY_SIMPLEX
    (text_w, text_h), _ = cv2.getTextSize(text, font, 0.8, 2)
    origin = ((width - text_w) // 2, (height + text_h) // 2)
    cv2.putText(image, text, origin, font, 0.8, (150, 150, 150), 2, cv2.LINE_AA)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    return encoded.tobytes()


def mjpeg_part(jpeg: bytes, headers: dict[str, str]) -> bytes:
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n{extra}\r\n"
    return head.encode("ascii") + jpeg + b"\r\n"


class PreviewWatch:
    """Holds one viewer registration on a tracker's preview; re-registers when the tracker (re)starts,
    since a restarted tracker has a fresh viewer count."""

    def __init__(self, supervisor: Supervisor, tracker_uuid: str, kind: str) -> None:
        self._supervisor = supervisor
        self._uuid = tracker_uuid
        self._kind = kind
        self._stack = contextlib.ExitStack()

    def renew(self) -> None:
        self._stack.close()
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(self._supervisor.watching_preview(self._uuid, self._kind))

    def close(self) -> None:
        self._stack.close()

    @contextlib.contextmanager
    def held(self) -> Iterator[PreviewWatch]:
        self.renew()
        try:
            yield self
        finally:
            self.close()


def _is_fresh(frame: PreviewFrame, now: float) -> bool:
    # Capture timestamps are the workers' time.monotonic(), the same clock as ours.
    return now - frame.capture_ts < OFFLINE_AFTER_S


async def preview_stream(context: ServiceContext, tracker_uuid: str, kind: str) -> AsyncIterator[bytes]:
    supervisor = context.supervisor
    with PreviewWatch(supervisor, tracker_uuid, kind).held() as watch:
        sent_sequence: int | None = None
        last_new_at = time.monotonic()
        offline_sent_at: float | None = None
        was_running = supervisor.is_running_tracker(tracker_uuid)
        while True:
            running = supervisor.is_running_tracker(tracker_uuid)
            if running != was_running:
                await anyio.to_thread.run_sync(watch.renew)
                was_running = running
                sent_sequence = None
            # preview() takes the supervisor's lock, which a stop holds for seconds: keep it off the event loop.
            frame = await anyio.to_thread.run_sync(supervisor.preview, tracker_uuid, kind)
            now = time.monotonic()
            is_new = frame is not None and frame.sequence != sent_sequence
            # The first image must be recent: the slot keeps the last one from before anyone watched.
            if frame is not None and is_new and (sent_sequence is not None or _is_fresh(frame, now)):
                sent_sequence = frame.sequence
                last_new_at = now
                offline_sent_at = None
                headers = {"X-Timestamp": f"{frame.capture_ts:.6f}", "X-Sequence": str(frame.sequence)}
                yield mjpeg_part(frame.jpeg, headers)
            elif now - last_new_at >= OFFLINE_AFTER_S and (
                offline_sent_at is None or now - offline_sent_at >= OFFLINE_REPEAT_S
            ):
                offline_sent_at = now
                yield mjpeg_part(offline_jpeg(), {"X-Preview": "offline"})
                if running:
                    # A tracker restarted between two polls has a new, unwatched slot: register again.
                    await anyio.to_thread.run_sync(watch.renew)
            await asyncio.sleep(1.0 / context.store.config.preview_fps)


@router.get(
    "/{uuid}/{kind}",
    summary="MJPEG preview of a tracker",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {f"multipart/x-mixed-replace; boundary={BOUNDARY}": {}},
            "description": "An endless MJPEG stream.",
        },
        404: {"description": "No tracker with this uuid."},
    },
    description=(
        "`camera`: the raw (rotated) camera frame with the ROI drawn. `algorithm`: the ROI as the tracker "
        "sees it, with the pupil ellipse, its centre, confidence and openness. "
        f"`multipart/x-mixed-replace; boundary={BOUNDARY}`; each part carries `Content-Type: image/jpeg`, "
        "`Content-Length`, `X-Timestamp` (capture time, monotonic seconds) and `X-Sequence`. At most "
        "`preview_fps` images a second (config, default 30). Images are encoded only while a stream is "
        "open, once for all viewers. After 1 s without a new image a 'camera offline' picture is sent "
        "(its part has `X-Preview: offline`) and repeated every second until images come again."
    ),
)
async def preview_feed(context: Context, uuid: str, kind: PreviewKind) -> StreamingResponse:
    if context.store.config.tracker(uuid) is None:
        raise HTTPException(404, f"no tracker with uuid {uuid!r}")
    return StreamingResponse(
        preview_stream(context, uuid, kind),
        media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
        headers=STREAM_HEADERS,
    )

"""Camera process: source -> preprocess (rotation, flips, ROI) -> shared-memory ring.

A thin shell around `run_camera_loop`, which keeps a state machine (disconnected -> connecting ->
connected) and reconnects with exponential backoff capped at 5 s. A new capture source or
preprocessing setting takes effect at once, without restarting the process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from app.camera.base import FrameSource, SourceError
from app.camera.preprocess import Preprocessor
from app.config.models import CameraConfig, EtvrConfig
from app.runtime.frames import FrameTooLargeError, FrameWriter, SharedFrameStore
from app.runtime.preview_drawing import PreviewPublisher, draw_roi
from app.runtime.previews import PreviewSlot
from app.runtime.recording import Recorder
from app.runtime.worker import WorkerProcess
from app.runtime.worker_host import StatusPublisher

logger = logging.getLogger(__name__)

BACKOFF_FIRST_S = 0.25
BACKOFF_MAX_S = 5.0
READ_TIMEOUT_S = 0.1
FPS_WINDOW_S = 1.0


@dataclass
class CameraLoopControl:
    """Shared between the loop and the config watcher thread."""

    camera: CameraConfig
    reconnect: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def update(self, camera: CameraConfig) -> None:
        with self.lock:
            source_changed = (camera.capture_source, camera.serial_baud) != (
                self.camera.capture_source,
                self.camera.serial_baud,
            )
            self.camera = camera
        if source_changed:
            self.reconnect.set()


class FpsMeter:
    def __init__(self) -> None:
        self._count = 0
        self._since = time.monotonic()
        self.fps = 0.0

    def tick(self, now: float) -> None:
        self._count += 1
        elapsed = now - self._since
        if elapsed >= FPS_WINDOW_S:
            self.fps = self._count / elapsed
            self._count = 0
            self._since = now


def run_camera_loop(
    control: CameraLoopControl,
    make_source: Callable[[CameraConfig], FrameSource],
    writer: FrameWriter,
    should_stop: Callable[[], bool],
    status: StatusPublisher,
    preview: PreviewPublisher | None = None,
    recorder: Recorder | None = None,
) -> None:

    backoff_s = BACKOFF_FIRST_S
    fps = FpsMeter()
    while not should_stop():
        control.reconnect.clear()
        camera = control.camera
        if not camera.capture_source:
            status.set(state="no_source", last_error="no capture_source configured", fps=0.0)
            control.reconnect.wait(READ_TIMEOUT_S)
            continue
        status.set(state="connecting", source=camera.capture_source)
        try:
            source = make_source(camera)
            source.open()
        except SourceError as exc:
            status.set(state="disconnected", last_error=str(exc), fps=0.0)
            logger.warning("camera %s: %s (retry in %.2f s)", camera.capture_source, exc, backoff_s)
            _wait_backoff(backoff_s, control, should_stop)
            backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)
            continue
        # The monotonic clock is shared by all processes: tests line a virtual eye's script up with it.
        status.set(state="connected", last_error=None, source_opened_at=time.monotonic())
        logger.info("camera connected: %s", camera.capture_source)
        backoff_s = BACKOFF_FIRST_S
        try:
            preprocessor = Preprocessor.from_config(camera)
            prepared_for: CameraConfig | None = None
            while not should_stop() and not control.reconnect.is_set():
                frame = source.read(READ_TIMEOUT_S)
                if frame is None:
                    continue
                if recorder is not None:
                    recorder.feed(frame.gray)
                if prepared_for is not control.camera:
                    prepared_for = control.camera
                    preprocessor = Preprocessor.from_config(prepared_for)
                roi, info = preprocessor.apply(frame.gray)
                try:
                    writer.write(roi, frame.capture_ts)
                except FrameTooLargeError as exc:
                    status.set(last_error=str(exc))
                    continue
                if source.waits_for_reader:
                    # Unthrottled, the next frame is made while the tracker works on this one, and no sooner:
                    # rendering frames only to be skipped took a core from the tracker (1 tracker: 457 -> 595 frames/s,
                    # the camera 93 -> 22 % of a core).
                    writer.wait_taken(READ_TIMEOUT_S)
                now = time.monotonic()
                if preview is not None and preview.due(now):
                    preview.publish(draw_roi(info.rotated, info.roi), frame.capture_ts, now)
                fps.tick(now)
                if status.due(now):
                    counters = source.counters
                    status.set(
                        fps=round(fps.fps, 2),
                        frames_received=counters.received,
                        frames_decoded=counters.decoded,
                        frames_corrupt=counters.corrupt,
                        frames_dropped=writer.dropped,
                        frames_sent=writer.sequence,
                        reader_waits_timed_out=writer.unwaited,
                        roi_clamped=info.roi_clamped,
                        roi=list(info.roi),
                    )
        except SourceError as exc:
            status.set(state="disconnected", last_error=str(exc), fps=0.0)
            logger.warning("camera %s lost: %s", camera.capture_source, exc)
        finally:
            source.close()
            if recorder is not None:
                recorder.close()
    status.set(state="stopped", fps=0.0)


def _wait_backoff(delay_s: float, control: CameraLoopControl, should_stop: Callable[[], bool]) -> None:
    deadline = time.monotonic() + delay_s
    while not should_stop() and not control.reconnect.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        control.reconnect.wait(min(remaining, READ_TIMEOUT_S))


def make_configured_source(camera: CameraConfig) -> FrameSource:
    from app.camera.factory import make_source

    return make_source(camera.capture_source, serial_baud=camera.serial_baud)


class CameraShell:
    def __init__(self, process: WorkerProcess, status: StatusPublisher, config: EtvrConfig) -> None:
        self.process = process
        self.status = status
        tracker = config.tracker(process.tracker_uuid)
        if tracker is None:
            raise RuntimeError(f"tracker {process.tracker_uuid} is not in the config")
        self.control = CameraLoopControl(tracker.camera)

    def main(self, config: EtvrConfig) -> None:
        import cv2

        cv2.setNumThreads(1)
        channels = self.process.channels
        store = SharedFrameStore(channels["frame_store_name"], channels["frame_slots"], channels["max_frame_bytes"])
        writer = FrameWriter(store, channels["frames_tx"])
        preview_name, preview_viewers = channels["preview"]
        preview_slot = PreviewSlot(preview_name, preview_viewers)
        preview = PreviewPublisher(preview_slot, config.preview_fps)
        recorder = Recorder(channels["recording"])
        stop_flag = self.process.stop_flag
        try:
            run_camera_loop(
                self.control,
                make_configured_source,
                writer,
                lambda: bool(stop_flag.value),
                self.status,
                preview,
                recorder,
            )
        finally:
            del writer
            store.close()
            preview_slot.close()

    def on_config_change(self, config: EtvrConfig, sections: set[str]) -> None:
        uuid = self.process.tracker_uuid
        tracker = config.tracker(uuid)
        if tracker is not None and f"tracker:{uuid}:camera" in sections:
            self.control.update(tracker.camera)


def build_shell(process: WorkerProcess, status: StatusPublisher, config: EtvrConfig) -> CameraShell:
    return CameraShell(process, status, config)

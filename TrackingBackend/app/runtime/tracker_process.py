"""Tracker process: newest frame from the ring -> EyePipeline -> result to the OSC pipe and the board.

Commands from the main process (recenter, calibrate) arrive on their own pipe; a finished calibration
goes back up the uplink so that the main process persists it in the config.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

from app.config.models import EtvrConfig, TrackerConfig
from app.runtime.camera_process import FpsMeter
from app.runtime.frames import FrameReader, SharedFrameStore, make_nonblocking
from app.runtime.logs import send_event
from app.runtime.preview_drawing import PreviewPublisher, draw_tracking
from app.runtime.previews import PreviewSlot
from app.runtime.results import ResultBoard, ResultRecord, pack_result
from app.runtime.worker import WorkerProcess
from app.runtime.worker_host import StatusPublisher
from app.tracking.pipeline import EyePipeline

logger = logging.getLogger(__name__)

READ_TIMEOUT_S = 0.1
# Recenter/calibrate commands are looked for this often, not every frame (a poll is a syscall).
COMMAND_POLL_INTERVAL_S = 0.05


class PipelineHolder:
    """The pipeline plus a pending config swap from the watcher thread (applied between frames)."""

    def __init__(self, config: TrackerConfig) -> None:
        self.pipeline = EyePipeline(config)
        self._pending: TrackerConfig | None = None
        self._lock = threading.Lock()

    def request_update(self, config: TrackerConfig) -> None:
        with self._lock:
            self._pending = config

    def apply_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is not None:
            self.pipeline.update_config(pending)


def handle_commands(commands: Connection, pipeline: EyePipeline, now: float) -> None:
    while commands.poll(0):
        command = commands.recv()
        if command == "recenter":
            pipeline.recenter()
        elif command == "calibrate":
            pipeline.start_calibration(now)
        else:
            logger.warning("unknown tracker command %r", command)


def run_tracker_loop(
    holder: PipelineHolder,
    preview: PreviewPublisher | None,
    reader: FrameReader,
    results_tx: Connection,
    commands_rx: Connection,
    board: ResultBoard,
    board_slot: int,
    should_stop: Callable[[], bool],
    status: StatusPublisher,
    uplink: Connection | None,
    tracker_uuid: str,
) -> None:
    fps = FpsMeter()
    make_nonblocking(results_tx)
    dropped_results = 0
    processed = 0
    commands_due = 0.0
    while not should_stop():
        holder.apply_pending()
        got = reader.read_newest(READ_TIMEOUT_S)
        now = time.monotonic()
        if now >= commands_due:
            commands_due = now + COMMAND_POLL_INTERVAL_S
            handle_commands(commands_rx, holder.pipeline, now)
        if got is None:
            continue
        record, gray = got
        result = holder.pipeline.process(gray, record.capture_ts)
        now = time.monotonic()
        fps.tick(now)
        processed += 1
        out = ResultRecord.from_eye_result(
            result, record.sequence, record.capture_ts, now, fps.fps, record.width, record.height
        )
        board.post(board_slot, out)
        # The result leaves first: a watched preview (draw + JPEG encode) must not delay the OSC datagram.
        try:
            results_tx.send_bytes(pack_result(out))
        except BlockingIOError:
            dropped_results += 1
        if preview is not None and preview.due(now):
            overlay = draw_tracking(
                gray,
                out.pupil_x,
                out.pupil_y,
                out.ellipse_w,
                out.ellipse_h,
                out.ellipse_angle,
                out.confidence,
                out.openness,
            )
            preview.publish(overlay, record.capture_ts, now)
        # Between frames: the lids' refits this frame made due (its result has gone out).
        holder.pipeline.upkeep()
        take_update = getattr(holder.pipeline, "take_calibration_update", None)
        update = take_update() if take_update is not None else None
        if update is not None and uplink is not None:
            send_event(uplink, "calibration", {"uuid": tracker_uuid, "calibration": update.model_dump(mode="json")})
        if status.due(now, "tracking"):
            status.set(
                state="tracking",
                fps=round(fps.fps, 2),
                frames_processed=processed,
                frames_skipped=reader.skipped,
                frames_torn=reader.torn,
                closed_eye_skips=holder.pipeline.closed_eye_skips,
                short_searches=holder.pipeline.short_searches,
                still_frames=holder.pipeline.still_frames,
                pupil_refinements=holder.pipeline.refinements,
                notice=holder.pipeline.closure_problem or None,
                results_dropped=dropped_results,
                latency_ms=round(out.latency_ms, 3),
                calibration_progress=out.calibration_progress,
            )


class TrackerShell:
    def __init__(self, process: WorkerProcess, status: StatusPublisher, config: EtvrConfig) -> None:
        self.process = process
        self.status = status
        tracker = config.tracker(process.tracker_uuid)
        if tracker is None:
            raise RuntimeError(f"tracker {process.tracker_uuid} is not in the config")
        self.holder = PipelineHolder(tracker)

    def main(self, config: EtvrConfig) -> None:
        import cv2

        cv2.setNumThreads(1)
        channels = self.process.channels
        store = SharedFrameStore(channels["frame_store_name"], channels["frame_slots"], channels["max_frame_bytes"])
        reader = FrameReader(store, channels["frames_rx"])
        board = ResultBoard(channels["board"])
        preview_name, preview_viewers = channels["preview"]
        preview_slot = PreviewSlot(preview_name, preview_viewers)
        preview = PreviewPublisher(preview_slot, config.preview_fps)
        stop_flag = self.process.stop_flag
        self.status.set(push=True, state="waiting_for_frames")
        try:
            run_tracker_loop(
                self.holder,
                preview,
                reader,
                channels["results_tx"],
                channels["commands_rx"],
                board,
                channels["board_slot"],
                lambda: bool(stop_flag.value),
                self.status,
                self.process.uplink,
                self.process.tracker_uuid,
            )
        finally:
            del reader
            store.close()
            preview_slot.close()

    def on_config_change(self, config: EtvrConfig, sections: set[str]) -> None:
        uuid = self.process.tracker_uuid
        tracker = config.tracker(uuid)
        if tracker is not None and any(section.startswith(f"tracker:{uuid}:") for section in sections):
            self.holder.request_update(tracker)


def build_shell(process: WorkerProcess, status: StatusPublisher, config: EtvrConfig) -> TrackerShell:
    return TrackerShell(process, status, config)

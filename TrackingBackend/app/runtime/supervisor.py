"""The main process's side of the workers: spawn, watch, restart with backoff, stop, report.

For each enabled eye tracker: a camera, a tracker and an OSC process, joined by pipes and a
shared-memory frame ring that this process owns (created at start, unlinked at stop, so no segment
outlives a killed worker). Status lives in a Manager dict that the workers write at a low rate.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.managers import SyncManager
from pathlib import Path
from typing import Any

from app.config.models import EtvrConfig, TrackerConfig, TrackerPosition
from app.config.store import ConfigStore
from app.runtime.frames import DEFAULT_MAX_FRAME_BYTES, DEFAULT_SLOTS, SharedFrameStore
from app.runtime.logs import UplinkReader
from app.runtime.previews import PREVIEW_KINDS, PreviewFrame, PreviewSlot
from app.runtime.recording import RecordingControl, recording_path
from app.runtime.results import ResultBoard
from app.runtime.worker import SPAWN, WorkerProcess, new_stop_flag, watch_parent

logger = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 2.0
KILL_TIMEOUT_S = 1.0
MONITOR_INTERVAL_S = 0.1
RESTART_BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 5.0)
HEALTHY_AFTER_S = 10.0  # a worker that crashed after running this long was not crash-looping
CRASH_STATES = (None, "starting", "crashed")  # states a crash-looping worker dies in
BOARD_SLOTS = {TrackerPosition.LEFT_EYE: 0, TrackerPosition.RIGHT_EYE: 1, TrackerPosition.MOUTH: 2}
EYE_POSITIONS = (TrackerPosition.LEFT_EYE, TrackerPosition.RIGHT_EYE)
PROCESS_KINDS = ("camera", "tracker", "osc")


@dataclass
class ProcessSlot:
    kind: str
    process: WorkerProcess | None = None
    uplink: Connection | None = None
    restarts: int = 0
    failures_in_row: int = 0
    restart_at: float | None = None
    started_at: float = 0.0
    last_exit_code: int | None = None


@dataclass
class TrackerRuntime:
    tracker: TrackerConfig
    board_slot: int
    frame_store: SharedFrameStore
    frames_rx: Connection
    frames_tx: Connection
    results_rx: Connection
    results_tx: Connection
    commands_rx: Connection
    commands_tx: Connection
    stop_flag: Any
    previews: dict[str, PreviewSlot]
    recording: RecordingControl = field(default_factory=RecordingControl)
    slots: dict[str, ProcessSlot] = field(default_factory=dict)

    @property
    def uuid(self) -> str:
        return self.tracker.uuid


class Supervisor:
    def __init__(self, store: ConfigStore) -> None:
        self.store = store
        self.config_path: Path = store.path
        self._lock = threading.RLock()
        self._runtimes: dict[str, TrackerRuntime] = {}
        self._running = False
        self._closed = False
        self.board = ResultBoard()
        self._manager = SyncManager(ctx=SPAWN)
        # The initializer lives in a light module: the manager process need not import this one.
        self._manager.start(initializer=watch_parent)
        self.status: Any = self._manager.dict()
        self._uplinks = UplinkReader(self._on_event)
        self._monitor_stop = threading.Event()
        self._monitor = threading.Thread(target=self._monitor_loop, name="supervisor-monitor", daemon=True)
        self._monitor.start()

    # -- public API -----------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> None:
        with self._lock:
            self._running = True
            self.reconcile(self.store.config)

    def stop(self) -> None:
        with self._lock:
            self._running = False
            self._stop_runtimes(list(self._runtimes.values()))
            self._runtimes.clear()

    def restart(self) -> None:
        with self._lock:
            self.stop()
            self.start()

    def close(self) -> None:
        """Stop everything and release the manager; the supervisor is unusable afterwards."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.stop()
        self._monitor_stop.set()
        self._monitor.join(timeout=2)
        self._uplinks.close()
        with contextlib.suppress(Exception):
            self._manager.shutdown()

    def reconcile(self, config: EtvrConfig) -> None:
        """Make the running trackers match the config (only when tracking is started)."""
        with self._lock:
            if not self._running:
                return
            wanted = {t.uuid: t for t in config.trackers if t.enabled and t.tracker_position in EYE_POSITIONS}
            obsolete = [
                rt
                for uuid, rt in self._runtimes.items()
                if uuid not in wanted or wanted[uuid].tracker_position != rt.tracker.tracker_position
            ]
            if obsolete:
                self._stop_runtimes(obsolete)
                for rt in obsolete:
                    self._runtimes.pop(rt.uuid, None)
            for uuid, tracker in wanted.items():
                if uuid in self._runtimes:
                    self._runtimes[uuid].tracker = tracker
                else:
                    self._runtimes[uuid] = self._start_runtime(tracker)

    def send_command(self, command: str, tracker_uuid: str | None = None) -> list[str]:
        """Send a command to one tracker (or all running ones); returns the uuids it reached."""
        reached = []
        with self._lock:
            for uuid, rt in self._runtimes.items():
                if tracker_uuid is None or uuid == tracker_uuid:
                    try:
                        rt.commands_tx.send(command)
                        reached.append(uuid)
                    except OSError as exc:
                        logger.warning("command %s to %s failed: %s", command, uuid, exc)
        return reached

    def is_running_tracker(self, tracker_uuid: str) -> bool:
        return tracker_uuid in self._runtimes

    def latest_result(self, tracker_uuid: str) -> dict[str, Any] | None:
        rt = self._runtimes.get(tracker_uuid)
        if rt is None:
            return None
        record = self.board.read(rt.board_slot)
        return record.as_dict() if record is not None else None

    def preview(self, tracker_uuid: str, kind: str) -> PreviewFrame | None:
        """The newest preview image of a running tracker, or None (not running, or nothing encoded yet)."""
        # Lock-free (a stop holds the lock for seconds): a slot closed under us reads as "no image".
        rt = self._runtimes.get(tracker_uuid)
        if rt is None:
            return None
        try:
            return rt.previews[kind].latest()
        except (ValueError, BufferError):
            return None

    @contextlib.contextmanager
    def watching_preview(self, tracker_uuid: str, kind: str) -> Iterator[None]:
        """While inside, the tracker's workers encode this preview (viewers share one encode)."""
        with self._lock:
            rt = self._runtimes.get(tracker_uuid)
            counter = rt.previews[kind].viewers if rt is not None else None
            if counter is not None:
                counter.value += 1
        try:
            yield
        finally:
            if counter is not None:
                with self._lock:
                    counter.value = max(0, counter.value - 1)

    def start_recording(self, tracker_uuid: str, folder: Path) -> Path | None:
        """Start recording a running tracker's raw frames into `folder`; the new file's path, or None."""
        with self._lock:
            rt = self._runtimes.get(tracker_uuid)
            if rt is None:
                return None
            path = recording_path(folder, rt.tracker.name or rt.uuid)
            rt.recording.start(path)
            return path

    def stop_recording(self, tracker_uuid: str) -> tuple[Path, int] | None:
        """Stop a recording; its path and the frames written, or None when none was running."""
        with self._lock:
            rt = self._runtimes.get(tracker_uuid)
            if rt is None or not rt.recording.active.value:
                return None
            rt.recording.stop()
            return Path(rt.recording.path.value.decode("utf-8")), int(rt.recording.frames.value)

    def preview_viewers(self, tracker_uuid: str, kind: str) -> int:
        rt = self._runtimes.get(tracker_uuid)
        return int(rt.previews[kind].viewers.value) if rt is not None else 0

    def tracker_status(self, tracker: TrackerConfig) -> dict[str, Any]:
        rt = self._runtimes.get(tracker.uuid)
        processes: dict[str, Any] = {}
        for kind in PROCESS_KINDS:
            info: dict[str, Any] = {"alive": False, "pid": None, "restarts": 0, "state": "stopped"}
            if rt is not None:
                slot = rt.slots[kind]
                reported: dict[str, Any] = {}
                with contextlib.suppress(Exception):
                    reported = dict(self.status.get(f"{tracker.uuid}:{kind}", {}))
                info.update(reported)
                alive = slot.process is not None and slot.process.is_alive()
                info.update(
                    alive=alive,
                    pid=slot.process.pid if slot.process else None,
                    restarts=slot.restarts,
                    last_exit_code=slot.last_exit_code,
                )
                if not alive:
                    info["state"] = "restarting" if self._running else "stopped"
                elif not reported:
                    info["state"] = "starting"  # spawned, not yet reporting
            processes[kind] = info
        camera = processes["camera"]
        return {
            "uuid": tracker.uuid,
            "name": tracker.name,
            "tracker_position": tracker.tracker_position.value,
            "enabled": tracker.enabled,
            "running": rt is not None,
            "camera_state": camera.get("state", "stopped"),
            "fps": processes["tracker"].get("fps", 0.0),
            "last_error": next((p.get("last_error") for p in processes.values() if p.get("last_error")), None),
            "notice": next((p.get("notice") for p in processes.values() if p.get("notice")), None),
            "processes": processes,
            "latest": self.latest_result(tracker.uuid),
        }

    def pids(self) -> list[int]:
        with self._lock:
            return [
                slot.process.pid
                for rt in self._runtimes.values()
                for slot in rt.slots.values()
                if slot.process is not None and slot.process.pid is not None
            ]

    # -- internals ------------------------------------------------------------------------------------------

    def _start_runtime(self, tracker: TrackerConfig) -> TrackerRuntime:
        frames_rx, frames_tx = SPAWN.Pipe(duplex=False)
        results_rx, results_tx = SPAWN.Pipe(duplex=False)
        commands_rx, commands_tx = SPAWN.Pipe(duplex=False)
        store = SharedFrameStore(None, DEFAULT_SLOTS, DEFAULT_MAX_FRAME_BYTES, create=True)
        board_slot = BOARD_SLOTS[tracker.tracker_position]
        self.board.clear(board_slot)
        previews = {kind: PreviewSlot(create=True) for kind in PREVIEW_KINDS}
        rt = TrackerRuntime(
            tracker,
            board_slot,
            store,
            frames_rx,
            frames_tx,
            results_rx,
            results_tx,
            commands_rx,
            commands_tx,
            new_stop_flag(),
            previews,
        )
        for kind in PROCESS_KINDS:
            rt.slots[kind] = ProcessSlot(kind)
            self._spawn(rt, rt.slots[kind])
        logger.info("tracker %s (%s) started", tracker.name or tracker.uuid, tracker.tracker_position.value)
        return rt

    def _make_process(self, rt: TrackerRuntime, kind: str, uplink: Connection) -> WorkerProcess:
        store = rt.frame_store
        ring = {"frame_store_name": store.name, "frame_slots": store.slots, "max_frame_bytes": store.max_frame_bytes}
        channels: dict[str, Any]
        if kind == "camera":
            channels = {
                **ring,
                "frames_tx": rt.frames_tx,
                "preview": self._preview_channel(rt, "camera"),
                "recording": rt.recording.channel(),
            }
        elif kind == "tracker":
            channels = {
                **ring,
                "frames_rx": rt.frames_rx,
                "results_tx": rt.results_tx,
                "commands_rx": rt.commands_rx,
                "board": self.board.shared,
                "board_slot": rt.board_slot,
                "preview": self._preview_channel(rt, "algorithm"),
            }
        else:
            # Plain strings: a child unpickles these before its heavy imports (see worker.py).
            others = {pos.value: BOARD_SLOTS[pos] for pos in EYE_POSITIONS if pos != rt.tracker.tracker_position}
            channels = {
                "results_rx": rt.results_rx,
                "position": rt.tracker.tracker_position.value,
                "other_slots": others,
                "board": self.board.shared,
            }
        return WorkerProcess(kind, rt.uuid, self.config_path, rt.stop_flag, self.status, uplink, channels)

    @staticmethod
    def _preview_channel(rt: TrackerRuntime, kind: str) -> tuple[str, Any]:
        slot = rt.previews[kind]
        return slot.name, slot.viewers

    def _spawn(self, rt: TrackerRuntime, slot: ProcessSlot) -> None:
        uplink_rx, uplink_tx = SPAWN.Pipe(duplex=False)
        process = self._make_process(rt, slot.kind, uplink_tx)
        process.start()
        uplink_tx.close()  # the child has its copy; EOF then means the child is gone
        if slot.uplink is not None:
            self._uplinks.remove(slot.uplink)
            slot.uplink.close()
        slot.process, slot.uplink = process, uplink_rx
        slot.started_at = time.monotonic()
        slot.restart_at = None
        self._uplinks.add(uplink_rx)

    def _stop_runtimes(self, runtimes: list[TrackerRuntime]) -> None:
        for rt in runtimes:
            rt.stop_flag.value = True
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        processes = [s.process for rt in runtimes for s in rt.slots.values() if s.process is not None]
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in processes:
            if process.is_alive():
                logger.warning("%s did not stop in %.1f s: terminating", process.name, JOIN_TIMEOUT_S)
                process.terminate()
                process.join(KILL_TIMEOUT_S)
            if process.is_alive():
                process.kill()
                process.join(KILL_TIMEOUT_S)
        for rt in runtimes:
            for slot in rt.slots.values():
                if slot.uplink is not None:
                    self._uplinks.remove(slot.uplink)
                    slot.uplink.close()
                with contextlib.suppress(KeyError, Exception):
                    del self.status[f"{rt.uuid}:{slot.kind}"]
            for conn in (
                rt.frames_rx,
                rt.frames_tx,
                rt.results_rx,
                rt.results_tx,
                rt.commands_rx,
                rt.commands_tx,
            ):
                conn.close()
            rt.frame_store.close()
            for preview in rt.previews.values():
                preview.close()
            self.board.clear(rt.board_slot)
            logger.info("tracker %s stopped", rt.tracker.name or rt.uuid)

    def _monitor_loop(self) -> None:
        while not self._monitor_stop.wait(MONITOR_INTERVAL_S):
            with self._lock:
                if not self._running:
                    continue
                now = time.monotonic()
                for rt in self._runtimes.values():
                    for slot in rt.slots.values():
                        self._check_slot(rt, slot, now)

    def _check_slot(self, rt: TrackerRuntime, slot: ProcessSlot, now: float) -> None:
        process = slot.process
        if process is None or process.is_alive():
            return
        if slot.restart_at is None:
            slot.last_exit_code = process.exitcode
            if process.exitcode == 0:
                return  # a clean exit is not a crash: it is not restarted
            reported: dict[str, Any] = {}
            with contextlib.suppress(Exception):
                reported = dict(self.status.get(f"{rt.uuid}:{slot.kind}", {}))
            # Killed from outside while working, or it ran a while: not a crash loop, so the short delay.
            # Only a worker that dies while starting, or crashes on its own, backs off further each time.
            if reported.get("state") not in CRASH_STATES or now - slot.started_at > HEALTHY_AFTER_S:
                slot.failures_in_row = 0
            delay = RESTART_BACKOFF_S[min(slot.failures_in_row, len(RESTART_BACKOFF_S) - 1)]
            slot.restart_at = now + delay
            logger.warning("%s exited with code %s; restarting in %.1f s", process.name, process.exitcode, delay)
            return
        if now >= slot.restart_at:
            slot.failures_in_row += 1
            slot.restarts += 1
            self._spawn(rt, slot)

    def _on_event(self, kind: str, payload: Any) -> None:
        if kind == "calibration":
            uuid = payload["uuid"]
            try:
                # Read, change and write under the store's lock: an API change landing in between is kept.
                with self.store.lock:
                    trackers = self.store.config.model_dump(mode="json")["trackers"]
                    for tracker in trackers:
                        if tracker["uuid"] == uuid:
                            tracker["calibration"] = payload["calibration"]
                    self.store.update({"trackers": trackers})
            except Exception:
                logger.exception("could not store the calibration of %s", uuid)
            else:
                logger.info("calibration of %s stored", uuid)

"""The base of every worker process: child set-up, parent-death watch, status, config hot reload.

`__init__` stores only picklable inputs; `run()` sets up the child and calls `main()`, which a
subclass implements as a thin shell around a loop function that tests can drive in a thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import threading
import time
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnProcess
from pathlib import Path
from typing import Any

from app.config.models import EtvrConfig
from app.config.store import read_config_file
from app.config.watcher import ConfigWatcher
from app.runtime.logs import install_child_logging

logger = logging.getLogger(__name__)

STATUS_INTERVAL_S = 1.0
SPAWN = multiprocessing.get_context("spawn")


def new_stop_flag() -> Any:
    """A lock-free flag: a process killed while reading it cannot leave anything locked."""
    return SPAWN.RawValue(ctypes.c_bool, False)


def watch_parent() -> None:
    """Exit at once when the parent dies, however it dies (kill -9 included)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def _wait_for_parent() -> None:
        wait([parent.sentinel])
        os._exit(0)

    threading.Thread(target=_wait_for_parent, name="parent-watch", daemon=True).start()


def apply_affinity(cpus: list[int]) -> None:
    if not cpus:
        return
    try:
        import psutil

        available = set(range(psutil.cpu_count() or 1))
        chosen = [cpu for cpu in cpus if cpu in available]
        if chosen:
            psutil.Process().cpu_affinity(chosen)
    except (AttributeError, NotImplementedError, OSError, ValueError) as exc:
        logger.info("CPU affinity not applied: %s", exc)


class StatusPublisher:
    """Writes this process's status into the main process's Manager dict, at a low rate."""

    def __init__(self, status: Any, key: str) -> None:
        self._status = status
        self._key = key
        self._fields: dict[str, Any] = {"pid": os.getpid(), "started_at": time.time()}
        self._last_push = 0.0

    def set(self, push: bool = False, **values: Any) -> None:
        changed = any(self._fields.get(k) != v for k, v in values.items())
        self._fields.update(values)
        now = time.monotonic()
        if push or (changed and "state" in values) or now - self._last_push >= STATUS_INTERVAL_S:
            self.push(now)

    def push(self, now: float | None = None) -> None:
        self._last_push = time.monotonic() if now is None else now
        # A gone manager means the parent is going down too.
        with contextlib.suppress(OSError, EOFError):
            self._status[self._key] = dict(self._fields)


class WorkerProcess(SpawnProcess):
    """One worker (camera, tracker or OSC) of one tracker."""

    kind = "worker"

    def __init__(self, tracker_uuid: str, config_path: Path, stop_flag: Any, status: Any, uplink: Connection) -> None:
        super().__init__(name=f"etvr.{self.kind}:{tracker_uuid}", daemon=True)
        self.tracker_uuid = tracker_uuid
        self.config_path = config_path
        self.stop_flag = stop_flag
        self.status_dict = status
        self.uplink = uplink

    @property
    def status_key(self) -> str:
        return f"{self.tracker_uuid}:{self.kind}"

    def run(self) -> None:
        watch_parent()
        config = read_config_file(self.config_path).config
        install_child_logging(self.uplink, debug=config.debug)
        apply_affinity(config.affinity_cpus())
        self.status = StatusPublisher(self.status_dict, self.status_key)
        self.status.set(push=True, state="starting", alive=True)
        watcher = ConfigWatcher(self.config_path, config, self.on_config_change)
        watcher.start()
        try:
            self.main(config)
        except Exception as exc:
            logger.exception("%s crashed", self.name)
            self.status.set(push=True, state="crashed", last_error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            watcher.stop()
        self.status.set(push=True, state="stopped")

    def stopping(self) -> bool:
        return bool(self.stop_flag.value)

    def main(self, config: EtvrConfig) -> None:
        raise NotImplementedError

    def on_config_change(self, config: EtvrConfig, sections: set[str]) -> None:
        """Called from the watcher thread with a new validated config."""

"""Inside a worker process: logging, affinity, status, config hot reload, then the worker's own shell."""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import os
import time
from typing import Any, Protocol

from app.config.models import EtvrConfig
from app.config.store import read_config_file
from app.config.watcher import ConfigWatcher
from app.runtime.logs import install_child_logging
from app.runtime.worker import WorkerProcess

logger = logging.getLogger(__name__)

STATUS_INTERVAL_S = 1.0


class WorkerShell(Protocol):
    """What each worker module provides: built from the process and the config, then run."""

    def main(self, config: EtvrConfig) -> None: ...

    def on_config_change(self, config: EtvrConfig, sections: set[str]) -> None: ...


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

    def due(self, now: float, state: str | None = None) -> bool:
        """Whether a `set` (with this `state`) would reach the main process now: a hot loop builds its
        values only then, not every frame."""
        if state is not None and self._fields.get("state") != state:
            return True
        return now - self._last_push >= STATUS_INTERVAL_S

    def set(self, push: bool = False, **values: Any) -> None:
        state_changed = "state" in values and self._fields.get("state") != values["state"]
        self._fields.update(values)
        now = time.monotonic()
        if push or state_changed or now - self._last_push >= STATUS_INTERVAL_S:
            self.push(now)

    def push(self, now: float | None = None) -> None:
        self._last_push = time.monotonic() if now is None else now
        # A gone manager means the parent is going down too.
        with contextlib.suppress(OSError, EOFError):
            self._status[self._key] = dict(self._fields)


def settle_heap() -> None:
    """Take what start-up built (modules, config, pipeline: ~40k objects) out of the cyclic collector's
    reach: a full collection walking them all takes tens of ms, a latency spike on the frame it hits."""
    gc.collect()
    gc.freeze()


def host_worker(process: WorkerProcess) -> None:
    config = read_config_file(process.config_path).config
    install_child_logging(process.uplink, debug=config.debug)
    apply_affinity(config.affinity_cpus())
    status = StatusPublisher(process.status_dict, f"{process.tracker_uuid}:{process.kind}")
    status.set(push=True, state="starting", alive=True)
    module = importlib.import_module(f"app.runtime.{process.kind}_process")
    shell: WorkerShell = module.build_shell(process, status, config)
    watcher = ConfigWatcher(process.config_path, config, shell.on_config_change)
    watcher.start()
    settle_heap()
    try:
        shell.main(config)
    except Exception as exc:
        logger.exception("%s crashed", process.name)
        status.set(push=True, state="crashed", last_error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        watcher.stop()
    status.set(push=True, state="stopped")

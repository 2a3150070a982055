"""The one worker process class: a light shell that watches its parent first, then hosts a worker.

Imports here are standard library only, because a spawned child unpickles this object (importing this
module) before anything else runs; the heavy imports (numpy, OpenCV, pydantic) happen in `run()` after
the parent-death watch is in place, so a child killed mid-start-up cannot be orphaned.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import threading
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnProcess
from pathlib import Path
from typing import Any

SPAWN = multiprocessing.get_context("spawn")
# Each worker runs one frame at a time on a machine of a few cores: a BLAS/OpenMP pool per process would
# only compete with the other workers (and spin). Read by numpy's BLAS when it loads; a user's own
# setting wins.
SINGLE_THREADED_MATHS_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


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


class WorkerProcess(SpawnProcess):
    """A camera, tracker or OSC worker of one tracker; `channels` are its pipes and shared buffers."""

    def __init__(
        self,
        kind: str,
        tracker_uuid: str,
        config_path: Path,
        stop_flag: Any,
        status: Any,
        uplink: Connection,
        channels: dict[str, Any],
    ) -> None:
        super().__init__(name=f"etvr.{kind}:{tracker_uuid}", daemon=True)
        self.kind = kind
        self.tracker_uuid = tracker_uuid
        self.config_path = config_path
        self.stop_flag = stop_flag
        self.status_dict = status
        self.uplink = uplink
        self.channels = channels

    def run(self) -> None:
        watch_parent()
        for name in SINGLE_THREADED_MATHS_ENV:
            os.environ.setdefault(name, "1")
        from app.runtime.worker_host import host_worker

        host_worker(self)

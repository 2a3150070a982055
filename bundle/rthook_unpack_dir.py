"""PyInstaller runtime hook of the one-file `ETVR`: tidy up after hard kills (see ETVR.spec).

A one-file executable runs as two processes: the bootloader, which unpacks the bundle into a fresh
`_MEI…` dir in the temp dir and removes it when its child exits, and the child, our service. The
desktop app stops the backend by SIGKILL of the whole process group, so the bootloader never removes
that dir: about 250 MB would pile up per session. Killing the bootloader alone (its pid only) would also
leave the service running as an orphan on Linux and macOS.

This hook runs first in every process of the bundle. Only the first one in an unpack dir (the service;
workers spawned later reuse the dir) does anything: it records the dir's owners, removes in the
background the unpack dirs of earlier ETVR launches whose owners are all gone, and stops the service
when the bootloader dies.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

OWNER_FILE_NAME = "etvr-owner.json"
PARENT_POLL_S = 0.25
FORCED_EXIT_AFTER_S = 10.0


def _claim_unpack_dir(unpack_dir: Path) -> bool:
    """Write the owner file if none exists yet: True only in the first process of this dir."""
    try:
        fd = os.open(unpack_dir / OWNER_FILE_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        return False
    with os.fdopen(fd, "w") as owner:
        json.dump({"pids": [os.getppid(), os.getpid()]}, owner)
    return True


def _owners_alive(owner_file: Path) -> bool:
    import psutil

    try:
        pids = json.loads(owner_file.read_text())["pids"]
        written_at = owner_file.stat().st_mtime
    except (OSError, ValueError, KeyError, TypeError):
        return True  # unreadable now (being written or removed): leave it
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(pid)
            # A zombie is dead but not yet reaped; a process started after the owner file only reuses the pid.
            if process.status() != psutil.STATUS_ZOMBIE and process.create_time() <= written_at + 1.0:
                return True
    return False


def _remove_unpack_dir(folder: Path) -> None:
    # The owner file goes last, so a removal cut short is finished by a later launch.
    for child in folder.iterdir():
        if child.name == OWNER_FILE_NAME:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                child.unlink()
    with contextlib.suppress(OSError):
        (folder / OWNER_FILE_NAME).unlink()
        folder.rmdir()


def remove_stale_unpack_dirs(own_dir: Path) -> None:
    """Remove earlier launches' unpack dirs whose bootloader and service are both gone."""
    for folder in own_dir.parent.glob("_MEI*"):
        owner_file = folder / OWNER_FILE_NAME
        if folder != own_dir and owner_file.is_file() and not _owners_alive(owner_file):
            _remove_unpack_dir(folder)


def _stop_when_bootloader_dies() -> None:
    bootloader_pid = os.getppid()
    while os.getppid() == bootloader_pid:
        time.sleep(PARENT_POLL_S)
    # A graceful stop (workers, shared memory); the next launch removes the unpack dir.
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(FORCED_EXIT_AFTER_S)
    os._exit(1)


def _install() -> None:
    bundle = getattr(sys, "_MEIPASS", None)
    # One-file mode unpacks beside the temp dir's other `_MEI…` dirs; a one-dir build has nothing to tidy.
    if bundle is None or not Path(bundle).name.startswith("_MEI"):
        return
    unpack_dir = Path(bundle)
    if not _claim_unpack_dir(unpack_dir):
        return
    threading.Thread(target=remove_stale_unpack_dirs, args=(unpack_dir,), name="unpack-cleanup", daemon=True).start()
    if os.name == "posix":  # on Windows the bootloader's job object already ends the service with it
        threading.Thread(target=_stop_when_bootloader_dies, name="bootloader-watch", daemon=True).start()


_install()

"""One log pipeline: children send records up their uplink pipe; the main process logs them.

The main process writes to stderr and to a rotating file in the log dir. A child never blocks on
logging: a full uplink drops the record.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import re
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(processName)s %(name)s: %(message)s"
MAX_LOG_FILE_BYTES = 2_000_000
LOG_FILE_BACKUPS = 3


_TOKEN_PATTERN = re.compile(r"(token=)[^&\s\"']+", re.IGNORECASE)


class RedactTokenFilter(logging.Filter):
    """Access tokens in URLs (`?token=...`) never reach a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "token=" in record.msg.lower():
            record.msg = _TOKEN_PATTERN.sub(r"\1***", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_PATTERN.sub(r"\1***", arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


def setup_main_logging(log_dir: Path | None, debug: bool = False) -> None:
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    # watchdog's debug lines about file events would feed back on a log file beside the config.
    logging.getLogger("watchdog").setLevel(logging.INFO)
    for handler in list(root.handlers):
        if getattr(handler, "_etvr", False):
            root.removeHandler(handler)
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(logging.Formatter(LOG_FORMAT))
    stream._etvr = True  # type: ignore[attr-defined]
    stream.addFilter(RedactTokenFilter())
    root.addHandler(stream)
    if log_dir is not None:
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
            file_handler = logging.handlers.RotatingFileHandler(
                log_dir / "etvr.log",
                maxBytes=MAX_LOG_FILE_BYTES,
                backupCount=LOG_FILE_BACKUPS,
                encoding="utf-8",
            )
        except OSError as exc:
            logging.getLogger(__name__).warning("no log file in %s: %s", log_dir, exc)
        else:
            file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
            file_handler._etvr = True  # type: ignore[attr-defined]
            file_handler.addFilter(RedactTokenFilter())
            root.addHandler(file_handler)


class UplinkLogHandler(logging.Handler):
    """Sends formatted records to the main process as ("log", fields) messages."""

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self._conn = conn
        self._lock_send = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            fields = {
                "name": record.name,
                "levelno": record.levelno,
                "levelname": record.levelname,
                "msg": message,
                "processName": record.processName,
                "created": record.created,
            }
            with self._lock_send:
                self._conn.send(("log", fields))
        except (BlockingIOError, BrokenPipeError, OSError):
            pass


def install_child_logging(uplink: Connection, debug: bool) -> None:
    if os.name == "posix":
        os.set_blocking(uplink.fileno(), False)
    root = logging.getLogger()
    root.handlers.clear()
    root.addHandler(UplinkLogHandler(uplink))
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    logging.getLogger("watchdog").setLevel(logging.INFO)


def send_event(uplink: Connection, kind: str, payload: Any) -> bool:
    """Send a non-log message to the main process; False if the pipe refused it."""
    try:
        uplink.send((kind, payload))
    except (BlockingIOError, BrokenPipeError, OSError):
        return False
    return True


class UplinkReader:
    """Main process: one thread reading every child's uplink; logs records, hands events to a callback."""

    def __init__(self, on_event: Callable[[str, Any], None]) -> None:
        self._on_event = on_event
        self._conns: set[Connection] = set()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = _wake_pipe()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="uplink-reader", daemon=True)
        self._thread.start()

    def add(self, conn: Connection) -> None:
        with self._lock:
            self._conns.add(conn)
        self._wake_w.send_bytes(b"w")

    def remove(self, conn: Connection) -> None:
        with self._lock:
            self._conns.discard(conn)
        self._wake_w.send_bytes(b"w")

    def close(self) -> None:
        self._stop = True
        with contextlib.suppress(OSError):
            self._wake_w.send_bytes(b"w")
        self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stop:
            with self._lock:
                conns = list(self._conns)
            ready = wait([*conns, self._wake_r], timeout=1.0)
            for conn in ready:
                if conn is self._wake_r:
                    with contextlib.suppress(EOFError, OSError):
                        while self._wake_r.poll():
                            self._wake_r.recv_bytes()
                    continue
                assert isinstance(conn, Connection)
                self._drain(conn)

    def _drain(self, conn: Connection) -> None:
        try:
            while conn.poll():
                kind, payload = conn.recv()
                if kind == "log":
                    record = logging.makeLogRecord(payload)
                    logging.getLogger(payload["name"]).handle(record)
                else:
                    self._on_event(kind, payload)
        except (EOFError, OSError):
            # The child side closed for good (it is reopened on restart with a new pipe).
            with self._lock:
                self._conns.discard(conn)
        except Exception:
            logging.getLogger(__name__).exception("bad uplink message")


def _wake_pipe() -> tuple[Connection, Connection]:
    from multiprocessing import Pipe

    reader, writer = Pipe(duplex=False)
    return reader, writer

"""Hot reload: a watchdog observer on the config file's folder, debounced, yielding validated configs.

Every process runs one. The callback gets the new validated config and the set of sections that
changed (see `changed_sections`), so a process reacts only to what concerns it. A file that does not
validate is reported and ignored here: only the main process backs files up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from app.config.models import EtvrConfig
from app.config.store import ConfigFileError, read_config_file

logger = logging.getLogger(__name__)

DEBOUNCE_S = 0.05
IGNORED_EVENT_TYPES = frozenset({"opened", "closed_no_write"})
ConfigCallback = Callable[[EtvrConfig, set[str]], None]


def changed_sections(old: EtvrConfig, new: EtvrConfig) -> set[str]:
    """Names of what differs: top-level keys ("osc", "debug", ...), "trackers" when the list's
    membership changed, and "tracker:<uuid>:<section>" for each changed section of a kept tracker."""
    changes: set[str] = set()
    old_dump, new_dump = old.model_dump(mode="json"), new.model_dump(mode="json")
    for key in new_dump:
        if key != "trackers" and old_dump.get(key) != new_dump[key]:
            changes.add(key)
    old_trackers = {t["uuid"]: t for t in old_dump["trackers"]}
    new_trackers = {t["uuid"]: t for t in new_dump["trackers"]}
    if old_trackers.keys() != new_trackers.keys():
        changes.add("trackers")
    for uuid, tracker in new_trackers.items():
        previous: dict[str, Any] | None = old_trackers.get(uuid)
        if previous is None:
            continue
        for section, value in tracker.items():
            if previous.get(section) != value:
                changes.add(f"tracker:{uuid}:{section}")
    return changes


class _Handler(FileSystemEventHandler):
    def __init__(self, target: Path, poke: Callable[[], None]) -> None:
        self._target = str(target)
        self._poke = poke

    def on_any_event(self, event: FileSystemEvent) -> None:
        # Reading the file raises "opened"/"closed_no_write": reacting to those would re-read it forever.
        if event.event_type in IGNORED_EVENT_TYPES:
            return
        paths = {str(event.src_path), str(getattr(event, "dest_path", "") or "")}
        if self._target in paths:
            self._poke()


class ConfigWatcher:
    """Watches one config file; calls `callback(new_config, changed_sections)` after each valid change."""

    def __init__(self, path: Path, initial: EtvrConfig, callback: ConfigCallback) -> None:
        self.path = path.resolve()
        self.current = initial
        self._callback = callback
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._observer: Any = None
        self._thread = threading.Thread(target=self._run, name="config-watcher", daemon=True)

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        observer = Observer()
        observer.daemon = True
        observer.schedule(_Handler(self.path, self._wake.set), str(self.path.parent), recursive=False)
        observer.start()
        self._observer = observer
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=2)
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            if self._stop.is_set():
                return
            # Debounce: editors and atomic writers produce bursts of events for one logical change.
            while self._wake.wait(DEBOUNCE_S) and not self._stop.is_set():
                self._wake.clear()
            self._wake.clear()
            self.check_now()

    def check_now(self) -> None:
        try:
            new = read_config_file(self.path).config
        except FileNotFoundError:
            return
        except (ConfigFileError, OSError) as exc:
            logger.warning("ignoring config change in %s: %s", self.path, exc)
            return
        sections = changed_sections(self.current, new)
        if not sections:
            return
        self.current = new
        try:
            self._callback(new, sections)
        except Exception:
            logger.exception("config change handler failed")

"""The main process's OSC side: the inbound listener following the config, VRChat discovery, status.

Sending happens in the per-eye OSC processes; this joins their per-target counters for the status
route. Recenter and recalibrate reach the trackers the same way as the API routes do
(`Supervisor.send_command`); the sync-blink toggle is a config update, so it persists and every OSC
process picks it up through the config file.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from app.config.store import ConfigStore
from app.osc.discovery import VrchatOscFinder, finder_while
from app.osc.modes import resolve_targets
from app.osc.receiver import InboundSettings, OscReceiver
from app.runtime.supervisor import Supervisor

logger = logging.getLogger(__name__)

FOLLOW_INTERVAL_S = 0.25  # how often config and running state are checked (changes apply within this)
SUPERVISOR_COMMANDS = {"recenter": "recenter", "recalibrate": "calibrate"}


class OscService:
    def __init__(self, store: ConfigStore, supervisor: Supervisor) -> None:
        self.store = store
        self.supervisor = supervisor
        self.receiver = OscReceiver(self.on_command)
        self.finder: VrchatOscFinder | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="osc-service", daemon=True)

    def start(self) -> None:
        self.apply()
        self._thread.start()

    def apply(self) -> None:
        osc = self.store.config.osc
        self.receiver.apply(InboundSettings.from_config(osc, self.supervisor.running))
        self._follow_discovery(osc.enable_receiving and self.supervisor.running)

    def _follow_discovery(self, inbound_on: bool) -> None:
        osc = self.store.config.osc
        wanted = inbound_on or any(t.enabled and t.auto_port for t in osc.outputs)
        self.finder = finder_while(self.finder, wanted)

    def _follow(self) -> None:
        while not self._stop.wait(FOLLOW_INTERVAL_S):
            try:
                self.apply()
            except Exception:
                logger.exception("OSC service: applying the config failed")

    def on_command(self, command: str) -> None:
        if command == "sync_blink":
            with self.store.lock:
                enabled = not self.store.config.osc.sync_blink
                self.store.update({"osc": {"sync_blink": enabled}})
            logger.info("sync blink %s (OSC)", "on" if enabled else "off")
            return
        reached = self.supervisor.send_command(SUPERVISOR_COMMANDS[command])
        logger.info("%s (OSC) reached %d tracker(s)", command, len(reached))

    def targets_status(self) -> list[dict[str, Any]]:
        """Each configured target with the counters of every OSC process added up."""
        config = self.store.config
        rows: dict[int, dict[str, Any]] = {}
        for plan in resolve_targets(config.osc):
            rows[plan.index] = {
                "index": plan.index,
                "name": plan.name,
                "mode": plan.mode,
                "address": plan.host,
                "port": plan.port,
                "auto_port": plan.auto_port,
                "messages_sent": 0,
                "send_errors": 0,
                "last_error": None,
                "listening": True,
            }
        for tracker in config.trackers:
            reported: dict[str, Any] = {}
            with contextlib.suppress(Exception):
                reported = dict(self.supervisor.status.get(f"{tracker.uuid}:osc", {}))
            for target in reported.get("targets", []):
                row = rows.get(target.get("index", -1))
                if row is None:
                    continue
                row["messages_sent"] += int(target.get("messages_sent", 0))
                row["send_errors"] += int(target.get("send_errors", 0))
                row["last_error"] = target.get("last_error") or row["last_error"]
                row["listening"] = row["listening"] and bool(target.get("listening", True))
                row["port"] = target.get("port", row["port"])
        return list(rows.values())

    def status(self) -> dict[str, Any]:
        finder = self.finder
        found = finder.found() if finder is not None else None
        return {
            "sending": self.store.config.osc.enable_sending,
            "targets": self.targets_status(),
            "receiver": self.receiver.status(),
            "vrchat": None
            if found is None
            else {"name": found.name, "address": found.host, "osc_port": found.osc_port},
        }

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self.receiver.close()
        if self.finder is not None:
            self.finder.close()
            self.finder = None

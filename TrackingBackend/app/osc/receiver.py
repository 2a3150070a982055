"""The inbound OSC listener (CONTRACTS §3): recenter, recalibrate and sync-blink commands.

Runs in the main process: one UDP listener on the configured port (the fixed-port mode), plus, with
OSCQuery on, one on a free port that is advertised over mDNS, so VRChat can send to us even when the
fixed port belongs to another program. A port in use is reported (status and log), never fatal.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import BlockingOSCUDPServer

from app.config.models import OscConfig
from app.osc.oscquery import OscQueryService

logger = logging.getLogger(__name__)

COMMANDS = ("recenter", "recalibrate", "sync_blink")
CommandHandler = Callable[[str], None]


def listen_host(address: str) -> str:
    """Where the listener binds: loopback while OSC stays on this machine, else every interface."""
    if address == "localhost":
        return "127.0.0.1"
    try:
        return "127.0.0.1" if ipaddress.ip_address(address.strip("[]")).is_loopback else "0.0.0.0"
    except ValueError:
        return "0.0.0.0"


@dataclass(frozen=True, slots=True)
class InboundSettings:
    enabled: bool
    host: str
    port: int
    oscquery: bool
    addresses: tuple[tuple[str, str], ...]  # (command, OSC address)

    @classmethod
    def from_config(cls, osc: OscConfig, active: bool) -> InboundSettings:
        e = osc.endpoints
        return cls(
            enabled=active and osc.enable_receiving,
            host=listen_host(osc.address),
            port=osc.receiver_port,
            oscquery=osc.oscquery,
            addresses=(("recenter", e.recenter), ("recalibrate", e.recalibrate), ("sync_blink", e.sync_blink)),
        )

    def sockets(self) -> tuple[bool, str, int, bool]:
        """What needs new sockets when it changes (new addresses only swap the lookup table)."""
        return self.enabled, self.host, self.port, self.oscquery

    def by_address(self) -> dict[str, str]:
        return {address: command for command, address in self.addresses}


class _Listener:
    def __init__(self, host: str, port: int, dispatcher: Dispatcher) -> None:
        self.server = BlockingOSCUDPServer((host, port), dispatcher)  # OSError when the port is taken
        self.port: int = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name=f"osc-in-{self.port}", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=2)


class OscReceiver:
    """Listeners and OSCQuery advertisement following `apply(settings)`; commands go to `on_command`."""

    def __init__(self, on_command: CommandHandler) -> None:
        self._on_command = on_command
        self._lock = threading.Lock()
        self._settings: InboundSettings | None = None
        self._commands_by_address: dict[str, str] = {}
        self._fixed: _Listener | None = None
        self._query_listener: _Listener | None = None
        self._oscquery: OscQueryService | None = None
        self.error: str | None = None
        self.received = 0
        self.commands = dict.fromkeys(COMMANDS, 0)
        self.last_command: tuple[str, float] | None = None

    def apply(self, settings: InboundSettings) -> None:
        with self._lock:
            if settings == self._settings:
                return
            previous, self._settings = self._settings, settings
            self._commands_by_address = settings.by_address()
            if previous is not None and previous.sockets() == settings.sockets():
                if self._oscquery is not None:
                    self._oscquery.set_addresses(self._oscquery_addresses(settings))
                return
            self._stop()
            if settings.enabled:
                self._start(settings)

    @staticmethod
    def _oscquery_addresses(settings: InboundSettings) -> dict[str, str]:
        return {address: f"ETVR {command}" for command, address in settings.addresses}

    def _dispatcher(self) -> Dispatcher:
        dispatcher = Dispatcher()
        # Looked up per message, so changed addresses apply without reopening the sockets.
        dispatcher.set_default_handler(self._handle)
        return dispatcher

    def _handle(self, address: str, *args: Any) -> None:
        command = self._commands_by_address.get(address)
        if command is None:
            return
        self.received += 1
        # Bool True only: VRChat sends False when a button is released, and other types are not ours.
        if len(args) != 1 or args[0] is not True:
            logger.debug("OSC in: %s %r ignored (only a bool True acts)", address, args)
            return
        self.commands[command] += 1
        self.last_command = (command, time.time())
        logger.info("OSC in: %s -> %s", address, command)
        try:
            self._on_command(command)
        except Exception:
            logger.exception("OSC in: %s failed", command)

    def _start(self, settings: InboundSettings) -> None:
        dispatcher = self._dispatcher()
        try:
            self._fixed = _Listener(settings.host, settings.port, dispatcher)
            self.error = None
            logger.info("OSC in: listening on %s:%d", settings.host, settings.port)
        except OSError as exc:
            self.error = f"cannot listen on UDP port {settings.port}: {exc} (is another program using it?)"
            logger.warning("OSC in: %s; tracking goes on", self.error)
        if settings.oscquery:
            try:
                self._query_listener = _Listener("127.0.0.1", 0, dispatcher)
                addresses = self._oscquery_addresses(settings)
                self._oscquery = OscQueryService(self._query_listener.port, addresses)
                self._oscquery.start()
            except OSError as exc:
                logger.warning("OSC in: OSCQuery listener failed: %s", exc)
                if self._oscquery is not None:
                    self._oscquery.error = str(exc)

    def _stop(self) -> None:
        for listener in (self._fixed, self._query_listener):
            if listener is not None:
                listener.close()
        if self._oscquery is not None:
            self._oscquery.close()
        self._fixed = self._query_listener = None
        self._oscquery = None
        self.error = None

    def status(self) -> dict[str, Any]:
        with self._lock:
            settings = self._settings
            query = self._oscquery
            return {
                "enabled": bool(settings and settings.enabled),
                "host": settings.host if settings else None,
                "port": settings.port if settings else None,
                "listening": self._fixed is not None,
                "error": self.error,
                "received": self.received,
                "commands": dict(self.commands),
                "oscquery": {
                    "enabled": bool(settings and settings.enabled and settings.oscquery),
                    "name": query.name if query else None,
                    "osc_port": self._query_listener.port if self._query_listener else None,
                    "http_port": query.http_port if query else None,
                    "advertised": bool(query and query.advertised),
                    "error": query.error if query else None,
                },
            }

    def close(self) -> None:
        with self._lock:
            self._stop()
            self._settings = None

"""The OSC targets' sockets: one connected, non-blocking UDP socket per target, with its own counters.

A connected socket makes the kernel report a closed port (ICMP port unreachable) as
ConnectionRefusedError on a later send, so a dead target is counted instead of silently swallowing
datagrams; non-blocking sends and host names resolved in a thread mean one bad target never delays
the others.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from app.config.models import TrackerPosition
from app.osc.compose import TWO_EYES, EyeFrame
from app.osc.modes import TargetPlan
from app.osc.output import OpenSender, TargetEncoder

logger = logging.getLogger(__name__)

Endpoint = tuple[str, int]
AutoPortSource = Callable[[], int | None]


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


# A refused datagram means no program listens on the port yet (VRChat not started): normal, not a fault.
# The target counts as not listening until this long after the last refusal.
NOT_LISTENING_HOLD_S = 2.0


class TargetSocket:
    """Sends datagrams to one endpoint; counts what was sent and what failed, logs each new error once."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent = 0
        self.errors = 0
        self.last_error: str | None = None
        self.refused_at: float | None = None  # monotonic time of the last refused datagram
        self.endpoint: Endpoint | None = None
        # The socket's bound `send`, None while there is no socket (a host name being resolved): the
        # hot path calls it directly, reports errors to `failed` and adds to `sent` itself.
        self.send_now: Callable[[bytes], object] | None = None
        self._sock: socket.socket | None = None
        self._generation = 0
        self._lock = threading.Lock()

    def connect(self, endpoint: Endpoint) -> None:
        """Aim at a new endpoint; a host name is resolved in a thread (sends are skipped until then)."""
        if endpoint == self.endpoint:
            return
        self.endpoint = endpoint
        with self._lock:
            self._generation += 1
            generation = self._generation
            self._replace_socket(None)
        host, port = endpoint
        if _is_ip_literal(host):
            self._resolved(generation, host.strip("[]"), port)
        else:
            threading.Thread(
                target=self._resolved, args=(generation, host, port), name=f"osc-resolve-{host}", daemon=True
            ).start()

    def _resolved(self, generation: int, host: str, port: int) -> None:
        try:
            family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            sock.connect(address)
        except OSError as exc:
            self._error(f"cannot reach {host}:{port}: {exc}")
            return
        with self._lock:
            if generation == self._generation:
                self._replace_socket(sock)
                return
        sock.close()

    def _replace_socket(self, sock: socket.socket | None) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = sock
        self.send_now = None if sock is None else sock.send

    def send(self, datagram: bytes) -> bool:
        sock = self._sock
        if sock is None:
            return False
        try:
            sock.send(datagram)
        except OSError as exc:
            self.failed(exc)
            return False
        self.sent += 1
        return True

    def failed(self, exc: OSError) -> None:
        if isinstance(exc, BlockingIOError):
            self._error("send buffer full: datagram dropped")
        elif isinstance(exc, ConnectionRefusedError):
            # An earlier datagram met a closed port: nothing listens there (yet).
            self.refused_at = time.monotonic()
            self._error(f"nothing is listening on {self._where()} (connection refused): is its program running?")
        else:
            self._error(f"sending to {self._where()} failed: {exc}")

    def listening(self, now: float) -> bool:
        """False while datagrams to the target were refused within the last NOT_LISTENING_HOLD_S."""
        return self.refused_at is None or now - self.refused_at > NOT_LISTENING_HOLD_S

    def _where(self) -> str:
        return f"{self.endpoint[0]}:{self.endpoint[1]}" if self.endpoint else "?"

    def _error(self, message: str) -> None:
        self.errors += 1
        if message != self.last_error:
            logger.warning("OSC target %s: %s", self.name, message)
        self.last_error = message

    def close(self) -> None:
        with self._lock:
            self._generation += 1
            self._replace_socket(None)


HotTarget = tuple[TargetEncoder, TargetSocket, Callable[[OSError], None], bool]


class OscOutputs:
    """All targets of one OSC process: (re)configured from resolved plans, fed one frame per update."""

    def __init__(self, auto_port: AutoPortSource | None = None) -> None:
        self._auto_port = auto_port
        self._plans: list[TargetPlan] = []
        self._targets: list[tuple[TargetPlan, TargetEncoder, TargetSocket]] = []
        self._hot: list[HotTarget] = []
        self._sockets: dict[int, TargetSocket] = {}
        self._open: list[tuple[TargetSocket, OpenSender]] = []  # `open_targets`, built at first use
        self._open_owner: TrackerPosition | None = None
        self.follows_auto_port = False
        self.blink_pending = False  # a lid was closed at the last update: only `send` sees it reopen

    @property
    def plans(self) -> list[TargetPlan]:
        return self._plans

    def configure(self, plans: list[TargetPlan]) -> None:
        """Apply new target settings; sockets and counters of kept targets (same index) stay."""
        self._plans = plans
        wanted = {plan.index for plan in plans}
        for index in list(self._sockets):
            if index not in wanted:
                self._sockets.pop(index).close()
        for plan in plans:
            target = self._sockets.get(plan.index)
            if target is None:
                target = self._sockets[plan.index] = TargetSocket(plan.name)
            target.name = plan.name
            target.connect(self._endpoint(plan))
        self._targets = [(plan, TargetEncoder(plan), self._sockets[plan.index]) for plan in plans]
        self._hot = [(encoder, target, target.failed, plan.auto_port) for plan, encoder, target in self._targets]
        self._open = []
        self._open_owner = None
        self.follows_auto_port = any(plan.auto_port for plan in plans)
        self.blink_pending = False

    def _endpoint(self, plan: TargetPlan) -> Endpoint:
        if plan.auto_port and self._auto_port is not None:
            found = self._auto_port()
            if found is not None:
                return plan.host, found
        return plan.host, plan.port

    def send(self, frame: EyeFrame, own: TrackerPosition) -> int:
        """Send this process's share of `frame` to every target; returns the datagrams sent."""
        sent = 0
        for encoder, target, failed, auto_port in self._hot:
            if auto_port:
                self.follow_auto_port(encoder.plan, target)
            send = target.send_now
            if send is not None:
                count = encoder.emit(frame, own, send, failed)
                target.sent += count
                sent += count
        self.blink_pending = any(encoder.blink_pending for encoder, _, _, _ in self._hot)
        return sent

    def open_targets(self, own: TrackerPosition) -> list[tuple[TargetSocket, OpenSender]]:
        """Each target with its open sender for two-eye frames (`LayoutProgram.send_open`): for the usual
        update, two fresh eyes both open, no mirror, no sync blink, no `blink_pending` and no auto port (the
        caller checks and counts what was sent)."""
        if own is not self._open_owner:
            self._open = [(target, encoder.program(TWO_EYES, own).send_open) for encoder, target, _, _ in self._hot]
            self._open_owner = own
        return self._open

    def follow_auto_port(self, plan: TargetPlan, target: TargetSocket) -> None:
        target.connect(self._endpoint(plan))

    def send_raw(self, datagram: bytes) -> None:
        """One extra datagram to every target (the opt-in latency diagnostic)."""
        for _, _, target in self._targets:
            target.send(datagram)

    def totals(self) -> tuple[int, int, str | None, str | None]:
        """(messages sent, send errors, the last error, a notice): a target nobody listens to yet is a notice
        (the receiving program is not running), not an error."""
        sockets = list(self._sockets.values())
        now = time.monotonic()
        quiet = [s for s in sockets if not s.listening(now)]
        last = next((s.last_error for s in reversed(sockets) if s.last_error and s not in quiet), None)
        notice = f"{quiet[0].name}: {quiet[0].last_error}" if quiet else None
        return sum(s.sent for s in sockets), sum(s.errors for s in sockets), last, notice

    def status(self) -> list[dict[str, Any]]:
        rows = []
        now = time.monotonic()
        for plan in self._plans:
            target = self._sockets[plan.index]
            host, port = target.endpoint or (plan.host, plan.port)
            rows.append(
                {
                    "index": plan.index,
                    "name": plan.name,
                    "mode": plan.mode,
                    "address": host,
                    "port": port,
                    "messages_sent": target.sent,
                    "send_errors": target.errors,
                    "last_error": target.last_error,
                    "listening": target.listening(now),
                }
            )
        return rows

    def close(self) -> None:
        for target in self._sockets.values():
            target.close()
        self._sockets.clear()
        self._targets = []
        self._hot = []

"""OSC process: this eye's results + the other eye's latest -> every OSC target, in one pass per result.

One process runs per eye tracker. Which of the two sends which message is decided in
`app.osc.compose` (per-eye messages from each eye's process, combined ones from the leader), so both
processes together send every message once.
"""

from __future__ import annotations

import logging
import os
import select
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import fields
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from app.config.models import EtvrConfig, OscConfig, TrackerPosition
from app.osc.compose import CLOSED_OPENNESS, LEFT, RIGHT, STALE_AFTER_S, eye_values, frame_of
from app.osc.modes import resolve_targets
from app.osc.output import OpenSender
from app.osc.sender import OscOutputs, TargetSocket
from app.runtime.results import BOARD_VALUES, DOUBLE_BYTES, PACKED, ROW_WIDTH, ResultBoard, ResultRecord
from app.runtime.worker import WorkerProcess
from app.runtime.worker_host import StatusPublisher

if TYPE_CHECKING:
    from app.osc.discovery import VrchatOscFinder

logger = logging.getLogger(__name__)

READ_TIMEOUT_S = 0.1  # how soon a stop is noticed while no result comes
STATUS_EVERY_S = 0.5  # how often the loop asks whether status is due (building it costs more than a send)

# Opt-in diagnostic for `bench pipeline` (env ETVR_BENCH_LATENCY=1, off by default): after each update's
# datagrams, one more to the same targets, `/etvr/bench/latency ,sidddd` = eye position, frame sequence,
# capture_ts, sent_ts (monotonic seconds as OSC doubles, so no precision is lost), the raw pupil x and
# processed_ts (the tracker's result ready). sent_ts is read just after the update's last send;
# latency = sent_ts - capture_ts, of which processed_ts - capture_ts is the camera and tracker's share.
EYES = (LEFT, RIGHT)
BENCH_LATENCY_ENV = "ETVR_BENCH_LATENCY"
BENCH_LATENCY_ADDRESS = "/etvr/bench/latency"
BENCH_LATENCY_ARGS = struct.Struct(">idddd")


def _osc_string(text: str) -> bytes:
    raw = text.encode("ascii")
    return raw + b"\x00" * (4 - len(raw) % 4)


def bench_latency_prefix(position: TrackerPosition) -> bytes | None:
    """The constant head of this eye's latency datagram, or None when the diagnostic is off."""
    if os.environ.get(BENCH_LATENCY_ENV, "") != "1":
        return None
    return _osc_string(BENCH_LATENCY_ADDRESS) + _osc_string(",sidddd") + _osc_string(position.value)


# The fields of a result record the OSC side reads, unpacked straight from the pipe's bytes (the
# others are skipped by the struct format), in this order.
RECORD_FIELDS = (
    "sequence",
    "capture_ts",
    "processed_ts",
    "pupil_x",
    "gaze_x",
    "gaze_y",
    "openness",
    "dilation",
    "widen",
    "squeeze",
)
_FIELD_NAMES = [f.name for f in fields(ResultRecord)]
if [name for name in _FIELD_NAMES if name in RECORD_FIELDS] != list(RECORD_FIELDS):
    raise RuntimeError("RECORD_FIELDS must list ResultRecord's fields in its own order")
PROCESSED_TS_AT = RECORD_FIELDS.index("processed_ts")
EYE_VALUES_AT = RECORD_FIELDS.index("gaze_x")  # gaze_x .. squeeze: the arguments of `eye_values`
RecordValues = tuple[float, ...]


def _selected_fields(all_fields: struct.Struct) -> struct.Struct:
    """`all_fields` (one double per ResultRecord field) reduced to RECORD_FIELDS, the rest skipped."""
    order = all_fields.format[0]
    if all_fields.format != f"{order}{len(_FIELD_NAMES)}d":
        raise RuntimeError(f"unexpected result layout {all_fields.format!r}")
    return struct.Struct(order + "".join("d" if n in RECORD_FIELDS else f"{DOUBLE_BYTES}x" for n in _FIELD_NAMES))


RECORD_VALUES = _selected_fields(PACKED)  # from the pipe
BOARD_RECORD_VALUES = _selected_fields(BOARD_VALUES)  # from a board row
# multiprocessing.Connection frames each message with a 4-byte big-endian length.
FRAME_HEADER = struct.Struct("!i")
FRAME_BYTES = FRAME_HEADER.size + PACKED.size
READ_CHUNK_BYTES = 64 * 1024


class ResultReader:
    """This eye's records from the tracker's pipe, woken once per result.

    Where the platform has `select.poll`, one kept poller waits and a single `os.read` takes every
    record waiting; the records are parsed from `Connection`'s framing directly. (`Connection.poll`
    builds a selector per call and `recv_bytes` reads header and body separately: with a wait and a
    re-check per result that was most of an update's cost.) Elsewhere `Connection` itself is used.
    """

    def __init__(self, connection: Connection, use_poll: bool = hasattr(select, "poll")) -> None:
        self._connection = connection
        self._poller: Any = None
        self._fd = -1
        self._pending = b""
        if use_poll:
            self._fd = connection.fileno()
            self._poller = select.poll()
            self._poller.register(self._fd, select.POLLIN)

    def wait(self, timeout_s: float) -> list[RecordValues]:
        """The records that arrived (at most `timeout_s` waiting for the first; empty when none did).
        Raises EOFError when the tracker's end of the pipe is closed."""
        if self._poller is None:
            return self._wait_connection(timeout_s)
        if not self._poller.poll(int(timeout_s * 1000)):
            return []
        data = os.read(self._fd, READ_CHUNK_BYTES)
        if len(data) == FRAME_BYTES and not self._pending:  # the usual case, without a call more
            return [RECORD_VALUES.unpack_from(data, FRAME_HEADER.size)]
        return self.records_in(data)

    def records_in(self, data: bytes) -> list[RecordValues]:
        """The records in `data`, read from the pipe (with any piece left over from the last read)."""
        if not data:
            raise EOFError("the tracker's result pipe is closed")
        if not self._pending and len(data) == FRAME_BYTES:  # the usual case: exactly one record
            return [RECORD_VALUES.unpack_from(data, FRAME_HEADER.size)]
        return self._split(self._pending + data)

    def _split(self, data: bytes) -> list[RecordValues]:
        records: list[RecordValues] = []
        at = 0
        while len(data) - at >= FRAME_HEADER.size:
            (size,) = FRAME_HEADER.unpack_from(data, at)
            if size != PACKED.size:
                raise ValueError(f"unexpected message of {size} bytes on the result pipe")
            if len(data) - at < FRAME_BYTES:
                break
            records.append(RECORD_VALUES.unpack_from(data, at + FRAME_HEADER.size))
            at += FRAME_BYTES
        self._pending = data[at:]
        return records

    def _wait_connection(self, timeout_s: float) -> list[RecordValues]:
        records: list[RecordValues] = []
        while self._connection.poll(0.0 if records else timeout_s):
            message = self._connection.recv_bytes()
            if len(message) != PACKED.size:
                raise ValueError(f"unexpected message of {len(message)} bytes on the result pipe")
            records.append(RECORD_VALUES.unpack(message))
        return records


class BoardEyeReader:
    """Another eye's latest values from its row of the result board: RECORD_FIELDS only (a full
    `ResultBoard.read` builds a 21-field record per update), under the board's sequence lock (the row's
    first double is odd while it is written and 0 before the first post; see app.runtime.results)."""

    def __init__(self, board: ResultBoard, slot: int) -> None:
        self._bytes = memoryview(board.shared).cast("B")
        self._doubles = self._bytes.cast("d")
        self._lock_at = slot * ROW_WIDTH
        self._values_at = (self._lock_at + 1) * DOUBLE_BYTES

    def read(self) -> RecordValues | None:
        """The row's latest values, or None if it never posted (or kept changing while read)."""
        doubles, lock_at = self._doubles, self._lock_at
        before = doubles[lock_at]
        values = BOARD_RECORD_VALUES.unpack_from(self._bytes, self._values_at)
        if before == doubles[lock_at] and int(before) % 2 == 0:  # the usual case: not being written
            return None if before == 0 else values
        for _ in range(8):
            before = doubles[lock_at]
            values = BOARD_RECORD_VALUES.unpack_from(self._bytes, self._values_at)
            if before == doubles[lock_at] and int(before) % 2 == 0:
                return None if before == 0 else values
        return None


class OscSettings:
    """The OSC section, swapped atomically by the config watcher thread."""

    def __init__(self, config: OscConfig) -> None:
        self.config = config
        self.lock = threading.Lock()


def run_osc_loop(
    settings: OscSettings,
    results_rx: Connection,
    own_position: TrackerPosition,
    other_slots: dict[TrackerPosition, int],
    board: ResultBoard,
    outputs: OscOutputs,
    should_stop: Callable[[], bool],
    status: StatusPublisher,
    on_targets: Callable[[OscConfig], None] | None = None,
) -> None:
    """Until `should_stop`: each result of this eye -> one frame -> every target (a config swap in
    `settings` takes effect at the next result).

    One wake-up per result: everything per update is kept to the work it needs (see
    `app.osc.output`); status is built only when the publisher will push it.
    """
    updates = 0
    bench_prefix = bench_latency_prefix(own_position)
    applied: OscConfig | None = None
    next_status_s = 0.0
    reader = ResultReader(results_rx)
    own_is_eye, own_is_left = own_position in EYES, own_position is LEFT
    # The other eyes' board rows (a mouth tracker's row is none of OSC's business).
    other_eyes = [
        (position is LEFT, BoardEyeReader(board, slot)) for position, slot in other_slots.items() if position in EYES
    ]
    # The other eye of a two-eye setup: the usual update takes the fast path (see below).
    partner = other_eyes[0][1] if own_is_eye and len(other_eyes) == 1 and other_eyes[0][0] != own_is_left else None
    mirror_eyes = sync_blink = False
    fast = False
    open_targets: list[tuple[TargetSocket, OpenSender]] = []
    while not should_stop():
        records = reader.wait(READ_TIMEOUT_S)
        now = time.monotonic()
        for record in records:
            config = settings.config
            if config is not applied:
                applied = config
                mirror_eyes, sync_blink = config.mirror_eyes, config.sync_blink
                if on_targets is not None:
                    on_targets(config)
                outputs.configure(resolve_targets(config))
                fast = partner is not None and not (mirror_eyes or sync_blink or outputs.follows_auto_port)
                open_targets = outputs.open_targets(own_position) if fast else []
            if not outputs.plans:
                continue
            # The usual update: both eyes fresh, every value in range, both lids open, none reopening. Its
            # frame would be `frame_of`'s TWO_EYES with the values as they are, so each target's open sender
            # takes them directly (the general path below builds the frame; the same datagrams).
            other = partner.read() if fast and partner is not None and not outputs.blink_pending else None
            if other is not None:
                _, _, own_ts, _, x, y, lid, dil, widen, squeeze = record
                _, _, other_ts, _, o_x, o_y, o_lid, o_dil, o_widen, o_squeeze = other
                if (
                    now - own_ts <= STALE_AFTER_S
                    and now - other_ts <= STALE_AFTER_S
                    and -1.0 <= x <= 1.0
                    and -1.0 <= y <= 1.0
                    and CLOSED_OPENNESS < lid <= 1.0
                    and 0.0 <= dil <= 1.0
                    and 0.0 <= widen <= 1.0
                    and 0.0 <= squeeze <= 1.0
                    and -1.0 <= o_x <= 1.0
                    and -1.0 <= o_y <= 1.0
                    and CLOSED_OPENNESS < o_lid <= 1.0
                    and 0.0 <= o_dil <= 1.0
                    and 0.0 <= o_widen <= 1.0
                    and 0.0 <= o_squeeze <= 1.0
                ):
                    sent = 0
                    for target, send_open in open_targets:
                        send = target.send_now
                        if send is not None:
                            count = send_open(
                                send, target.failed, x, y, lid, dil, widen, squeeze,
                                o_x, o_y, o_lid, o_dil, o_widen, o_squeeze,
                            )  # fmt: skip
                            target.sent += count
                            sent += count
                    if bench_prefix is not None and sent:
                        _send_bench_latency(outputs, bench_prefix, record)
                    updates += 1
                    continue
            eyes = [(own_is_left, record)] if own_is_eye else []
            eyes += [(is_left, other) for is_left, eye in other_eyes if (other := eye.read()) is not None]
            left = right = None
            for is_left, raw in eyes:
                if now - raw[PROCESSED_TS_AT] > STALE_AFTER_S:
                    continue
                values = eye_values(*raw[EYE_VALUES_AT:])
                if is_left:
                    left = values
                else:
                    right = values
            frame = frame_of(left, right, mirror_eyes, sync_blink)
            if frame is None:
                continue
            sent = outputs.send(frame, own_position)
            if bench_prefix is not None and sent:
                _send_bench_latency(outputs, bench_prefix, record)
            updates += 1
        if now >= next_status_s:
            next_status_s = now + STATUS_EVERY_S
            if status.due(now, _state(updates)):
                _publish(status, updates, outputs)
    _publish(status, updates, outputs)


def _send_bench_latency(outputs: OscOutputs, prefix: bytes, record: RecordValues) -> None:
    sequence, capture_ts, processed_ts, pupil_x = record[:EYE_VALUES_AT]
    args = (int(sequence), capture_ts, time.monotonic(), pupil_x, processed_ts)
    outputs.send_raw(prefix + BENCH_LATENCY_ARGS.pack(*args))


def _state(updates: int) -> str:
    return "sending" if updates else "waiting_for_results"


def _publish(status: StatusPublisher, updates: int, outputs: OscOutputs) -> None:
    sent, errors, last_error, notice = outputs.totals()
    status.set(
        state=_state(updates),
        updates=updates,
        messages_sent=sent,
        send_errors=errors,
        last_error=last_error,
        notice=notice,
        targets=outputs.status(),
    )


class OscShell:
    def __init__(self, process: WorkerProcess, status: StatusPublisher, config: EtvrConfig) -> None:
        self.process = process
        self.status = status
        self.settings = OscSettings(config.osc)
        self.finder: VrchatOscFinder | None = None

    def _follow_auto_ports(self, config: OscConfig) -> None:
        """Browse for VRChat's OSCQuery advertisement only while a target asks for its port."""
        wanted = config.enable_sending and any(t.enabled and t.auto_port for t in config.outputs)
        if wanted or self.finder is not None:
            from app.osc.discovery import finder_while  # zeroconf: imported only when asked for

            self.finder = finder_while(self.finder, wanted)

    def _vrchat_port(self) -> int | None:
        finder = self.finder
        found = finder.found() if finder is not None else None
        return found.osc_port if found is not None else None

    def main(self, config: EtvrConfig) -> None:
        channels = self.process.channels
        outputs = OscOutputs(auto_port=self._vrchat_port)
        board = ResultBoard(channels["board"])
        stop_flag = self.process.stop_flag
        self.status.set(push=True, state="waiting_for_results")
        try:
            position = TrackerPosition(channels["position"])
            others = {TrackerPosition(name): slot for name, slot in channels["other_slots"].items()}
            run_osc_loop(
                self.settings,
                channels["results_rx"],
                position,
                others,
                board,
                outputs,
                lambda: bool(stop_flag.value),
                self.status,
                self._follow_auto_ports,
            )
        finally:
            outputs.close()
            if self.finder is not None:
                self.finder.close()

    def on_config_change(self, config: EtvrConfig, sections: set[str]) -> None:
        if "osc" in sections:
            self.settings.config = config.osc


def build_shell(process: WorkerProcess, status: StatusPublisher, config: EtvrConfig) -> OscShell:
    return OscShell(process, status, config)

"""One target's datagrams for one update (pure): compose, keep this process's share, repeat blinks.

This runs for every result of every eye, in a process that sleeps between results, so each update
runs with cold caches and costs far more than a benchmark loop suggests: everything that depends only
on the frame's layout (which messages this process sends, their encoded addresses and type tags, where
their arguments sit) is worked out once per layout, and an update is one call for the values, one
struct pack and a concatenation per message.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import NamedTuple, cast

from app.config.models import TrackerPosition
from app.osc.compose import CLOSED_OPENNESS, LAYOUT_COUNT, EyeFrame, EyeValues, FrameLayout
from app.osc.messages import osc_header
from app.osc.modes import (
    LEFT_NAMES,
    MODES,
    NOT_LID,
    RIGHT_NAMES,
    MessageSpec,
    TargetPlan,
    compile_function,
    compile_values,
)

# The update in which a lid closes sends its closed value this many times in all, so one lost
# datagram cannot swallow a blink (while it stays closed, every later update sends it again anyway).
BLINK_REPEATS = 4
FLOAT_BYTES = 4


class OwnedMessage(NamedTuple):
    """A message this process sends: its encoded head, where its floats sit in the packed values, and
    whose lid it carries."""

    header: bytes
    start: int
    end: int
    lid: int


# Sends every message this process owns for a two-eye frame whose lids are open and none reopening:
# (send, failed, *this eye's values, *the other eye's values), each eye's EyeValues fields in order
# -> datagrams sent (an OSError from `send` goes to `failed`).
OpenSender = Callable[..., int]


class LayoutProgram(NamedTuple):
    """What one process sends to one target for frames of one layout."""

    owner: TrackerPosition
    values: Callable[[EyeValues, EyeValues], tuple[float, ...]]  # all of the mode's values, in message order
    pack: struct.Struct  # ... packed
    plain: tuple[tuple[bytes, int, int], ...]  # (header, start, end)
    lids: tuple[OwnedMessage, ...]
    send_open: OpenSender


def layout_program(plan: TargetPlan, layout: FrameLayout, own: TrackerPosition) -> LayoutProgram:
    specs = MODES[plan.mode](plan, layout)
    plain: list[tuple[bytes, int, int]] = []
    lids: list[OwnedMessage] = []
    at = 0
    for spec in specs:
        end = at + spec.arg_count * FLOAT_BYTES
        if spec.owner == own:
            header = osc_header(spec.address, spec.arg_count)
            if spec.lid == NOT_LID:
                plain.append((header, at, end))
            else:
                lids.append(OwnedMessage(header, at, end, spec.lid))
        at = end
    pack = struct.Struct(f">{at // FLOAT_BYTES}f")
    # In `emit`'s order: the plain messages, then the lids.
    owned = [spec for spec in specs if spec.owner == own and spec.lid == NOT_LID]
    owned += [spec for spec in specs if spec.owner == own and spec.lid != NOT_LID]
    return LayoutProgram(own, compile_values(specs), pack, tuple(plain), tuple(lids), open_sender(owned, own))


def open_sender(specs: list[MessageSpec], own: TrackerPosition) -> OpenSender:
    """One function that encodes and sends each of `specs` (this process's messages, lids included, each
    once): straight-line code, so an update with open eyes makes one call per target and no objects but
    the datagrams. The headers are bound as constants, never written into the code."""
    namespace: dict[str, object] = {}
    eyes = LEFT_NAMES + RIGHT_NAMES if own == TrackerPosition.LEFT_EYE else RIGHT_NAMES + LEFT_NAMES
    lines = [f"def send_open(send, failed, {', '.join(eyes)}):", "    sent = 0"]
    for index, spec in enumerate(specs):
        namespace[f"HEADER_{index}"] = osc_header(spec.address, spec.arg_count)
        namespace[f"PACK_{index}"] = struct.Struct(f">{spec.arg_count}f").pack
        lines += [
            "    try:",
            f"        send(HEADER_{index} + PACK_{index}({', '.join(spec.args)}))",
            "        sent += 1",
            "    except OSError as exc:",
            "        failed(exc)",
        ]
    lines.append("    return sent")
    return cast(OpenSender, compile_function("\n".join(lines) + "\n", "send_open", namespace))


class TargetEncoder:
    """Datagrams of one target; remembers each lid's last state to notice it closing."""

    def __init__(self, plan: TargetPlan) -> None:
        self.plan = plan
        self._programs: list[LayoutProgram | None] = [None] * LAYOUT_COUNT
        self._was_closed: dict[bytes, bool] = {}  # the lids closed at the last update, by header

    @property
    def blink_pending(self) -> bool:
        """Whether a lid was closed at the last update: `emit` must see it reopen (`send_open` cannot)."""
        return bool(self._was_closed)

    def program(self, layout: FrameLayout, own: TrackerPosition) -> LayoutProgram:
        program = self._programs[layout.code]
        if program is None or program.owner != own:
            program = self._programs[layout.code] = layout_program(self.plan, layout, own)
        return program

    def datagrams(self, frame: EyeFrame, own: TrackerPosition) -> list[bytes]:
        """The datagrams this eye's process sends for `frame` (the messages it owns)."""
        out: list[bytes] = []
        self.emit(frame, own, out.append, _reraise)
        return out

    def emit(
        self, frame: EyeFrame, own: TrackerPosition, send: Callable[[bytes], object], failed: Callable[[OSError], None]
    ) -> int:
        """Hand each datagram this process sends for `frame` to `send` as soon as it is encoded (an
        OSError from `send` goes to `failed`, and the rest still go out); returns how many `send` took.
        Runs once per target per update with cold caches: kept to the bare minimum of work."""
        program = self.program(frame.layout, own)
        packed = program.pack.pack(*program.values(frame.left, frame.right))
        attempts = len(program.plain)
        refused = 0
        for header, start, end in program.plain:
            try:
                send(header + packed[start:end])
            except OSError as exc:
                failed(exc)
                refused += 1
        if not program.lids:
            return attempts - refused
        left_closed = frame.left.openness <= CLOSED_OPENNESS
        right_closed = frame.right.openness <= CLOSED_OPENNESS
        was_closed = self._was_closed
        if not (left_closed or right_closed or was_closed):  # the usual case: open eyes, no blink to track
            attempts += len(program.lids)
            for header, start, end, _ in program.lids:
                try:
                    send(header + packed[start:end])
                except OSError as exc:
                    failed(exc)
                    refused += 1
        else:
            # indexed by lid kind: NOT_LID, LEFT_LID, RIGHT_LID, EITHER_LID
            closed_by_lid = (False, left_closed, right_closed, left_closed or right_closed)
            for header, start, end, lid in program.lids:
                data = header + packed[start:end]
                repeats = 1
                if closed_by_lid[lid]:
                    if header not in was_closed:  # closing now
                        repeats = BLINK_REPEATS
                        was_closed[header] = True
                elif header in was_closed:
                    del was_closed[header]
                attempts += repeats
                for _ in range(repeats):
                    try:
                        send(data)
                    except OSError as exc:
                        failed(exc)
                        refused += 1
        return attempts - refused


def _reraise(exc: OSError) -> None:
    raise exc

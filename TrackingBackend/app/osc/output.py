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
from typing import NamedTuple

from app.config.models import TrackerPosition
from app.osc.compose import CLOSED_OPENNESS, LAYOUT_COUNT, EyeFrame
from app.osc.messages import osc_header
from app.osc.modes import MODES, NOT_LID, TargetPlan

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


class LayoutProgram(NamedTuple):
    """What one process sends to one target for frames of one layout."""

    owner: TrackerPosition
    pack: struct.Struct  # all of the mode's values, in message order
    plain: tuple[tuple[bytes, int, int], ...]  # (header, start, end)
    lids: tuple[OwnedMessage, ...]


def layout_program(plan: TargetPlan, frame: EyeFrame, own: TrackerPosition) -> LayoutProgram:
    specs = MODES[plan.mode].specs(plan, frame.layout)
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
    return LayoutProgram(own, struct.Struct(f">{at // FLOAT_BYTES}f"), tuple(plain), tuple(lids))


class TargetEncoder:
    """Datagrams of one target; remembers each lid's last state to notice it closing."""

    def __init__(self, plan: TargetPlan) -> None:
        self.plan = plan
        self._values = MODES[plan.mode].values
        self._programs: list[LayoutProgram | None] = [None] * LAYOUT_COUNT
        self._was_closed: dict[bytes, bool] = {}  # the lids closed at the last update, by header

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
        program = self._programs[frame.layout.code]
        if program is None or program.owner != own:
            program = self._programs[frame.layout.code] = layout_program(self.plan, frame, own)
        packed = program.pack.pack(*self._values(self.plan, frame))
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

"""One target's datagrams for one update (pure): compose, keep this process's share, repeat blinks."""

from __future__ import annotations

from app.config.models import TrackerPosition
from app.osc.compose import EyeFrame
from app.osc.messages import encode_floats
from app.osc.modes import TargetPlan, compose

# The update in which a lid closes sends its closed value this many times in all, so one lost
# datagram cannot swallow a blink (while it stays closed, every later update sends it again anyway).
BLINK_REPEATS = 4


class TargetEncoder:
    """Datagrams of one target; remembers each lid's last state to notice it closing."""

    def __init__(self, plan: TargetPlan) -> None:
        self.plan = plan
        self._was_closed: dict[str, bool] = {}

    def datagrams(self, frame: EyeFrame, own: TrackerPosition) -> list[bytes]:
        """The datagrams this eye's process sends for `frame` (the messages it owns)."""
        out: list[bytes] = []
        for message in compose(self.plan, frame):
            if message.owner != own:
                continue
            data = encode_floats(message.address, message.values)
            closed = message.closed
            if closed is not None:
                closing = closed and not self._was_closed.get(message.address, False)
                self._was_closed[message.address] = closed
                if closing:
                    out += [data] * BLINK_REPEATS
                    continue
            out.append(data)
        return out

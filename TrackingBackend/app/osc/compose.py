"""Both eyes' latest results -> one `EyeFrame` per update (pure): what each eye shows, and who sends it.

One OSC process runs per eye tracker. Each gets its own eye's results and reads the other eye's
latest result from the shared board. So that no message goes out twice, every message has an owner,
the eye whose process sends it (see `docs/osc.md`, "Who sends what"):

- a message about one eye only is sent by the process of the eye whose data it carries;
- a message that combines both eyes (EyesY, dilation, EyesClosedAmount, LeftRightVec, synced lids)
  is sent by the *leader*: the lowest-position fresh eye (left before right). When the left eye goes
  stale (no result for `STALE_AFTER_S`), the right eye becomes the leader, and its values drive both
  eyes' messages, so the right process then sends everything.
- with one fresh eye (or `mirror_eyes`), that eye drives both sides and its process sends it all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from app.config.models import TrackerPosition
from app.osc.messages import clamp
from app.runtime.results import ResultRecord

STALE_AFTER_S = 0.5
# An eye at or below this openness is closed: its closed value is repeated (see `app.osc.output`).
CLOSED_OPENNESS = 0.15
LEFT = TrackerPosition.LEFT_EYE
RIGHT = TrackerPosition.RIGHT_EYE
_new_tuple = tuple.__new__  # NamedTuple construction without its Python-level __new__ (hot path)


@dataclass(frozen=True, slots=True)
class EyeSample:
    position: TrackerPosition
    record: ResultRecord


class EyeValues(NamedTuple):
    """One eye's values, clamped to their ranges and never NaN (tuples: built on every update)."""

    gaze_x: float  # [-1, 1], + = the user's right
    gaze_y: float  # [-1, 1], + = up
    openness: float  # [0, 1], 1 = open
    dilation: float  # [0, 1]
    widen: float  # [0, 1]
    squeeze: float  # [0, 1]

    @classmethod
    def from_record(cls, record: ResultRecord) -> EyeValues:
        return eye_values(record.gaze_x, record.gaze_y, record.openness, record.dilation, record.widen, record.squeeze)

    def with_openness(self, openness: float) -> EyeValues:
        return self._replace(openness=openness)

    @property
    def closed(self) -> bool:
        return self.openness <= CLOSED_OPENNESS


def eye_values(
    gaze_x: float, gaze_y: float, openness: float, dilation: float, widen: float, squeeze: float
) -> EyeValues:
    """Clamped `EyeValues`. Runs on every update: an in-range value (the usual case) costs one chained
    comparison, which NaN fails, so `clamp` sees only the rest; `_new_tuple` skips the generated
    Python-level `__new__`."""
    return _new_tuple(
        EyeValues,
        (
            gaze_x if -1.0 <= gaze_x <= 1.0 else clamp(gaze_x, -1.0, 1.0),
            gaze_y if -1.0 <= gaze_y <= 1.0 else clamp(gaze_y, -1.0, 1.0),
            openness if 0.0 <= openness <= 1.0 else clamp(openness, 0.0, 1.0),
            dilation if 0.0 <= dilation <= 1.0 else clamp(dilation, 0.0, 1.0),
            widen if 0.0 <= widen <= 1.0 else clamp(widen, 0.0, 1.0),
            squeeze if 0.0 <= squeeze <= 1.0 else clamp(squeeze, 0.0, 1.0),
        ),
    )


class FrameLayout(NamedTuple):
    """Who sends what in a frame, apart from the values. There are only five layouts (below), each with
    its own `code`, so encoders can keep their per-layout work keyed by a small int."""

    code: int
    left_owner: TrackerPosition  # sends the messages about the left eye only
    right_owner: TrackerPosition
    lid_left_owner: TrackerPosition  # the leader when sync blink ties both lids together
    lid_right_owner: TrackerPosition
    leader: TrackerPosition  # sends the messages that combine both eyes
    single: bool  # only one eye tracks: v2 uses its single-eye names


ONE_EYE = {
    LEFT: FrameLayout(0, LEFT, LEFT, LEFT, LEFT, LEFT, single=True),
    RIGHT: FrameLayout(1, RIGHT, RIGHT, RIGHT, RIGHT, RIGHT, single=True),
}
MIRRORED = FrameLayout(2, LEFT, LEFT, LEFT, LEFT, LEFT, single=False)  # both fresh: the left eye leads
TWO_EYES = FrameLayout(3, LEFT, RIGHT, LEFT, RIGHT, LEFT, single=False)
TWO_EYES_SYNCED = FrameLayout(4, LEFT, RIGHT, LEFT, LEFT, LEFT, single=False)
LAYOUT_COUNT = 5


class EyeFrame(NamedTuple):
    """What one update shows: each side's values (after single-eye, mirror and sync blink) and who sends."""

    left: EyeValues
    right: EyeValues
    layout: FrameLayout

    @property
    def left_owner(self) -> TrackerPosition:
        return self.layout.left_owner

    @property
    def right_owner(self) -> TrackerPosition:
        return self.layout.right_owner

    @property
    def lid_left_owner(self) -> TrackerPosition:
        return self.layout.lid_left_owner

    @property
    def lid_right_owner(self) -> TrackerPosition:
        return self.layout.lid_right_owner

    @property
    def leader(self) -> TrackerPosition:
        return self.layout.leader

    @property
    def single(self) -> bool:
        return self.layout.single

    @property
    def gaze_y(self) -> float:
        return (self.left.gaze_y + self.right.gaze_y) / 2.0

    @property
    def openness(self) -> float:
        return (self.left.openness + self.right.openness) / 2.0

    @property
    def dilation(self) -> float:
        return (self.left.dilation + self.right.dilation) / 2.0


def fresh_eyes(samples: list[EyeSample], now: float) -> list[EyeSample]:
    """Eyes whose latest result is recent enough to take part (a stale eye drops out, never freezes)."""
    return [s for s in samples if now - s.record.processed_ts <= STALE_AFTER_S]


def build_frame(eyes: list[EyeSample], mirror_eyes: bool, sync_blink: bool) -> EyeFrame | None:
    """The frame of this update from the fresh eyes; None when no eye is fresh."""
    by_position = {e.position: e.record for e in eyes if e.position in (LEFT, RIGHT)}
    left, right = by_position.get(LEFT), by_position.get(RIGHT)
    return frame_of(
        None if left is None else EyeValues.from_record(left),
        None if right is None else EyeValues.from_record(right),
        mirror_eyes,
        sync_blink,
    )


def frame_of(left: EyeValues | None, right: EyeValues | None, mirror_eyes: bool, sync_blink: bool) -> EyeFrame | None:
    """The frame from each side's fresh values (None = that eye is stale or absent); None when neither is."""
    if left is None:
        return None if right is None else _new_tuple(EyeFrame, (right, right, ONE_EYE[RIGHT]))
    if right is None:
        return _new_tuple(EyeFrame, (left, left, ONE_EYE[LEFT]))
    if mirror_eyes:
        return _new_tuple(EyeFrame, (left, left, MIRRORED))
    if sync_blink:
        lower = min(left.openness, right.openness)
        return EyeFrame(left.with_openness(lower), right.with_openness(lower), TWO_EYES_SYNCED)
    return _new_tuple(EyeFrame, (left, right, TWO_EYES))


# -- lid encodings ------------------------------------------------------------------------------------------
# Which consumer reads widen and squeeze, and how (docs/osc.md, "Eye expressions").

V1_EXPANDED_OPEN_MAX = 0.8  # VRCFT's LidExpanded range: 0..0.8 openness, 0.8..1 widen
MODULE_OPEN_MAX = 0.95  # the ETVR module's widen emulation starts at 0.95 (its WidenThreshold)
MODULE_WIDEN_SPAN = 0.10  # ... and is full at 1.05 (v2 threshold)
MODULE_LID_RANGE = (-1.0, 1.05)  # below 0: the module's squeeze emulation, down to -1


def lid_v1_expanded(openness: float, widen: float, squeeze: float) -> float:
    """VRCFT's LidExpanded(Squeeze) in [0, 1]: 0..0.8 openness, widen above; squeeze pulls it down."""
    value = V1_EXPANDED_OPEN_MAX * openness * (1.0 - squeeze) + (1.0 - V1_EXPANDED_OPEN_MAX) * widen
    return clamp(value, 0.0, 1.0)


def lid_module(openness: float, widen: float, squeeze: float) -> float:
    """The VRCFT ETVR module's v2 lid: 0..0.95 openness, up to 1.05 widen, below 0 squeeze (to -1)."""
    value = MODULE_OPEN_MAX * openness + MODULE_WIDEN_SPAN * widen - squeeze * (1.0 - openness)
    return clamp(value, *MODULE_LID_RANGE)

"""Which OSC messages a set of eye results becomes (pure), per output mode."""

from __future__ import annotations

from dataclasses import dataclass

from app.config.models import OscConfig, TrackerPosition
from app.osc.messages import clamp, encode_float
from app.runtime.results import ResultRecord

STALE_AFTER_S = 0.5


@dataclass(frozen=True, slots=True)
class EyeSample:
    position: TrackerPosition
    record: ResultRecord


def fresh_eyes(samples: list[EyeSample], now: float) -> list[EyeSample]:
    """Eyes whose latest result is recent enough to take part (a stale eye drops out, never freezes)."""
    return [s for s in samples if now - s.record.processed_ts <= STALE_AFTER_S]


def compose_v1(config: OscConfig, eyes: list[EyeSample]) -> list[bytes]:
    """v1 addresses (CONTRACTS §2): per-eye x and openness, shared y and dilation averaged."""
    if not eyes:
        return []
    endpoints = config.endpoints
    by_position = {e.position: e.record for e in eyes}
    left = by_position.get(TrackerPosition.LEFT_EYE)
    right = by_position.get(TrackerPosition.RIGHT_EYE)
    # With one eye, its values drive both.
    left = left or right
    right = right or left
    assert left is not None and right is not None
    if config.mirror_eyes:
        right = left
    left_open, right_open = left.openness, right.openness
    if config.sync_blink:
        left_open = right_open = min(left_open, right_open)
    eyes_y = (left.gaze_y + right.gaze_y) / 2.0
    dilation = (left.dilation + right.dilation) / 2.0
    return [
        encode_float(endpoints.left_eye_x, clamp(left.gaze_x, -1.0, 1.0)),
        encode_float(endpoints.right_eye_x, clamp(right.gaze_x, -1.0, 1.0)),
        encode_float(endpoints.eyes_y, clamp(eyes_y, -1.0, 1.0)),
        encode_float(endpoints.left_eye_blink, clamp(left_open, 0.0, 1.0)),
        encode_float(endpoints.right_eye_blink, clamp(right_open, 0.0, 1.0)),
        encode_float(endpoints.eyes_dilation, clamp(dilation, 0.0, 1.0)),
    ]

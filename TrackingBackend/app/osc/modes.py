"""Per output mode, which OSC messages an `EyeFrame` becomes (pure). The mapping table is in docs/osc.md.

A target's settings are resolved once into a `TargetPlan` (inherited fields filled, prefix applied to
every address), so composing an update is only arithmetic and tuple building.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from app.config.models import DEFAULT_PORT_BY_MODE, OscConfig, OscMode, OscTargetConfig, TrackerPosition
from app.osc.compose import EyeFrame, FrameLayout, lid_module, lid_v1_expanded
from app.osc.messages import clamp

V2_PREFIX = "/avatar/parameters/v2/"
NATIVE_VEC = "/tracking/eye/LeftRightVec"
NATIVE_PITCH_YAW = "/tracking/eye/LeftRightPitchYaw"
NATIVE_CLOSED = "/tracking/eye/EyesClosedAmount"
NATIVE_VEC_Z = 1.0  # VRChat reads the vector's direction: z = 1 makes x, y = ±1 about ±45°


# Whose lid a message carries: its closing update repeats it (app.osc.output).
NOT_LID, LEFT_LID, RIGHT_LID, EITHER_LID = 0, 1, 2, 3


class MessageSpec(NamedTuple):
    """One message of a mode without its values: address, float count, the eye whose process sends
    it, and whose lid it carries."""

    address: str
    arg_count: int
    owner: TrackerPosition
    lid: int = NOT_LID


class OscOut(NamedTuple):
    """One message: its address, float arguments, the eye whose process sends it, and for lid messages
    whether the lid is closed (None for the others)."""

    address: str
    values: tuple[float, ...]
    owner: TrackerPosition
    closed: bool | None = None


@dataclass(frozen=True, slots=True)
class TargetPlan:
    index: int
    name: str
    mode: OscMode
    host: str
    port: int
    auto_port: bool
    lid_encoding: str
    native_look: str
    native_max_angle_deg: float
    address: dict[str, str]  # role -> full address, prefix included


def _v1_addresses(config: OscConfig) -> dict[str, str]:
    e = config.endpoints
    return {
        "left_x": e.left_eye_x,
        "right_x": e.right_eye_x,
        "eyes_y": e.eyes_y,
        "left_lid": e.left_eye_blink,
        "right_lid": e.right_eye_blink,
        "dilation": e.eyes_dilation,
    }


V2_NAMES = {
    "left_x": "EyeLeftX",
    "left_y": "EyeLeftY",
    "right_x": "EyeRightX",
    "right_y": "EyeRightY",
    "left_lid": "EyeLidLeft",
    "right_lid": "EyeLidRight",
    "dilation": "PupilDilation",
    "x": "EyeX",
    "y": "EyeY",
    "lid": "EyeLid",
}
BABBLE_NAMES = {
    f"{side.lower()}_{part.lower()}": f"/{side}Eye{part}"
    for side in ("Left", "Right")
    for part in ("X", "Y", "Lid", "Widen", "Squint", "Brow")
}
NATIVE_NAMES = {"vec": NATIVE_VEC, "pitch_yaw": NATIVE_PITCH_YAW, "closed": NATIVE_CLOSED}


def _addresses(mode: OscMode, config: OscConfig) -> dict[str, str]:
    if mode == "v1":
        return _v1_addresses(config)
    if mode in ("v2", "module"):
        return {role: V2_PREFIX + name for role, name in V2_NAMES.items()}
    if mode == "babble":
        return dict(BABBLE_NAMES)
    return dict(NATIVE_NAMES)


def resolve_target(index: int, target: OscTargetConfig, config: OscConfig) -> TargetPlan:
    """Fill a target's null fields: no mode = the legacy target (top-level mode, address, sending_port);
    a mode but no port = that mode's default port; no address = the top-level address."""
    legacy = target.mode is None
    mode: OscMode = config.mode if target.mode is None else target.mode
    default_port = config.sending_port if legacy else DEFAULT_PORT_BY_MODE[mode]
    port = target.port if target.port is not None else default_port
    prefix = target.prefix
    return TargetPlan(
        index=index,
        name=target.name or f"target {index}",
        mode=mode,
        host=target.address or config.address,
        port=port,
        auto_port=target.auto_port,
        lid_encoding=target.lid_encoding,
        native_look=config.native_look,
        native_max_angle_deg=config.native_max_angle_deg,
        address={role: prefix + address for role, address in _addresses(mode, config).items()},
    )


def resolve_targets(config: OscConfig) -> list[TargetPlan]:
    """The enabled targets, resolved (none while sending is off)."""
    if not config.enable_sending:
        return []
    return [resolve_target(i, t, config) for i, t in enumerate(config.outputs) if t.enabled]


# -- composers ----------------------------------------------------------------------------------------------
# Each mode is two functions over the same message order: `specs` (addresses, argument counts, owners: they
# depend on the frame's layout only, so encoders compute them once per layout) and `values` (every argument
# of every message, flat, computed on each update).


def specs_v1(plan: TargetPlan, f: FrameLayout) -> list[MessageSpec]:
    a = plan.address
    return [
        MessageSpec(a["left_x"], 1, f.left_owner),
        MessageSpec(a["right_x"], 1, f.right_owner),
        MessageSpec(a["eyes_y"], 1, f.leader),
        MessageSpec(a["left_lid"], 1, f.lid_left_owner, LEFT_LID),
        MessageSpec(a["right_lid"], 1, f.lid_right_owner, RIGHT_LID),
        MessageSpec(a["dilation"], 1, f.leader),
    ]


def values_v1(plan: TargetPlan, f: EyeFrame) -> tuple[float, ...]:
    left, right = f.left, f.right
    if plan.lid_encoding == "expanded":
        left_lid, right_lid = lid_v1_expanded(left), lid_v1_expanded(right)
    else:
        left_lid, right_lid = left.openness, right.openness
    return (
        left.gaze_x,
        right.gaze_x,
        (left.gaze_y + right.gaze_y) / 2.0,
        left_lid,
        right_lid,
        (left.dilation + right.dilation) / 2.0,
    )


def _specs_v2_like(plan: TargetPlan, f: FrameLayout, dilation: bool) -> list[MessageSpec]:
    a = plan.address
    if f.single:
        specs = [
            MessageSpec(a["x"], 1, f.leader),
            MessageSpec(a["y"], 1, f.leader),
            MessageSpec(a["lid"], 1, f.leader, LEFT_LID),  # a single eye's values are on both sides
        ]
    else:
        specs = [
            MessageSpec(a["left_x"], 1, f.left_owner),
            MessageSpec(a["left_y"], 1, f.left_owner),
            MessageSpec(a["right_x"], 1, f.right_owner),
            MessageSpec(a["right_y"], 1, f.right_owner),
            MessageSpec(a["left_lid"], 1, f.lid_left_owner, LEFT_LID),
            MessageSpec(a["right_lid"], 1, f.lid_right_owner, RIGHT_LID),
        ]
    if dilation:
        specs.append(MessageSpec(a["dilation"], 1, f.leader))
    return specs


def specs_v2(plan: TargetPlan, f: FrameLayout) -> list[MessageSpec]:
    return _specs_v2_like(plan, f, dilation=True)


def values_v2(plan: TargetPlan, f: EyeFrame) -> tuple[float, ...]:
    left, right = f.left, f.right
    dilation = (left.dilation + right.dilation) / 2.0
    if f.layout.single:
        return (left.gaze_x, left.gaze_y, left.openness, dilation)
    return (left.gaze_x, left.gaze_y, right.gaze_x, right.gaze_y, left.openness, right.openness, dilation)


def specs_module(plan: TargetPlan, f: FrameLayout) -> list[MessageSpec]:
    """The VRCFT ETVR module's v2 parameters (it reads no dilation), lids in its widen/squeeze bands."""
    return _specs_v2_like(plan, f, dilation=False)


def values_module(plan: TargetPlan, f: EyeFrame) -> tuple[float, ...]:
    # Written out rather than shared with v2: one call per target and update (see app.osc.output).
    left, right = f.left, f.right
    if f.layout.single:
        return (left.gaze_x, left.gaze_y, lid_module(left))
    return (left.gaze_x, left.gaze_y, right.gaze_x, right.gaze_y, lid_module(left), lid_module(right))


def specs_native(plan: TargetPlan, f: FrameLayout) -> list[MessageSpec]:
    a = plan.address
    look = (
        MessageSpec(a["pitch_yaw"], 4, f.leader)
        if plan.native_look == "pitch_yaw"
        else MessageSpec(a["vec"], 6, f.leader)
    )
    return [look, MessageSpec(a["closed"], 1, f.leader, EITHER_LID)]


def values_native(plan: TargetPlan, f: EyeFrame) -> tuple[float, ...]:
    left, right = f.left, f.right
    closed_amount = clamp(1.0 - (left.openness + right.openness) / 2.0, 0.0, 1.0)
    if plan.native_look == "pitch_yaw":
        # VRChat: degrees, +pitch = down, +yaw = right.
        scale = plan.native_max_angle_deg
        return (-left.gaze_y * scale, left.gaze_x * scale, -right.gaze_y * scale, right.gaze_x * scale, closed_amount)
    return (left.gaze_x, left.gaze_y, NATIVE_VEC_Z, right.gaze_x, right.gaze_y, NATIVE_VEC_Z, closed_amount)


def specs_babble(plan: TargetPlan, f: FrameLayout) -> list[MessageSpec]:
    a = plan.address
    specs: list[MessageSpec] = []
    for side, owner, lid_owner, lid in (
        ("left", f.left_owner, f.lid_left_owner, LEFT_LID),
        ("right", f.right_owner, f.lid_right_owner, RIGHT_LID),
    ):
        specs += [
            MessageSpec(a[f"{side}_x"], 1, owner),
            MessageSpec(a[f"{side}_y"], 1, owner),
            MessageSpec(a[f"{side}_lid"], 1, lid_owner, lid),
            MessageSpec(a[f"{side}_widen"], 1, owner),
            MessageSpec(a[f"{side}_squint"], 1, owner),
            MessageSpec(a[f"{side}_brow"], 1, owner),
        ]
    return specs


def values_babble(plan: TargetPlan, f: EyeFrame) -> tuple[float, ...]:
    left, right = f.left, f.right
    # Babble's Brow is a brow lowerer: a squeeze pulls the brow down (it raises brows from Widen).
    return (
        *(left.gaze_x, left.gaze_y, left.openness, left.widen, left.squeeze, left.squeeze),
        *(right.gaze_x, right.gaze_y, right.openness, right.widen, right.squeeze, right.squeeze),
    )


class Mode(NamedTuple):
    specs: Callable[[TargetPlan, FrameLayout], list[MessageSpec]]
    values: Callable[[TargetPlan, EyeFrame], tuple[float, ...]]


MODES: dict[str, Mode] = {
    "v1": Mode(specs_v1, values_v1),
    "v2": Mode(specs_v2, values_v2),
    "native": Mode(specs_native, values_native),
    "module": Mode(specs_module, values_module),
    "babble": Mode(specs_babble, values_babble),
}


def lid_closed(lid: int, frame: EyeFrame) -> bool | None:
    """Whether the lid a message carries is closed (None for a message that carries no lid)."""
    if lid == NOT_LID:
        return None
    if lid == LEFT_LID:
        return frame.left.closed
    if lid == RIGHT_LID:
        return frame.right.closed
    return frame.left.closed or frame.right.closed


def compose(plan: TargetPlan, frame: EyeFrame) -> list[OscOut]:
    """Every message of `frame` for this target, whoever sends it (the reference; encoders do the same
    per layout without building these)."""
    mode = MODES[plan.mode]
    values = mode.values(plan, frame)
    out: list[OscOut] = []
    at = 0
    for spec in mode.specs(plan, frame.layout):
        out.append(OscOut(spec.address, values[at : at + spec.arg_count], spec.owner, lid_closed(spec.lid, frame)))
        at += spec.arg_count
    return out

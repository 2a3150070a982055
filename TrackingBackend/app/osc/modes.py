"""Per output mode, which OSC messages an `EyeFrame` becomes (pure). The mapping table is in docs/osc.md.

A target's settings are resolved once into a `TargetPlan` (inherited fields filled, prefix applied to
every address), so composing an update is only arithmetic and tuple building.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from app.config.models import DEFAULT_PORT_BY_MODE, OscConfig, OscMode, OscTargetConfig, TrackerPosition
from app.osc.compose import EyeFrame, EyeValues, lid_module, lid_v1_expanded
from app.osc.messages import clamp

V2_PREFIX = "/avatar/parameters/v2/"
NATIVE_VEC = "/tracking/eye/LeftRightVec"
NATIVE_PITCH_YAW = "/tracking/eye/LeftRightPitchYaw"
NATIVE_CLOSED = "/tracking/eye/EyesClosedAmount"
NATIVE_VEC_Z = 1.0  # VRChat reads the vector's direction: z = 1 makes x, y = ±1 about ±45°


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


def _lid_plain(eye: EyeValues) -> float:
    return eye.openness


def compose_v1(plan: TargetPlan, f: EyeFrame) -> list[OscOut]:
    a = plan.address
    lid = lid_v1_expanded if plan.lid_encoding == "expanded" else _lid_plain
    return [
        OscOut(a["left_x"], (f.left.gaze_x,), f.left_owner),
        OscOut(a["right_x"], (f.right.gaze_x,), f.right_owner),
        OscOut(a["eyes_y"], (f.gaze_y,), f.leader),
        OscOut(a["left_lid"], (lid(f.left),), f.lid_left_owner, f.left.closed),
        OscOut(a["right_lid"], (lid(f.right),), f.lid_right_owner, f.right.closed),
        OscOut(a["dilation"], (f.dilation,), f.leader),
    ]


def _compose_v2_like(plan: TargetPlan, f: EyeFrame, lid: Callable[[EyeValues], float], dilation: bool) -> list[OscOut]:
    a = plan.address
    if f.single:
        eye = f.left
        out = [
            OscOut(a["x"], (eye.gaze_x,), f.leader),
            OscOut(a["y"], (eye.gaze_y,), f.leader),
            OscOut(a["lid"], (lid(eye),), f.leader, eye.closed),
        ]
    else:
        out = [
            OscOut(a["left_x"], (f.left.gaze_x,), f.left_owner),
            OscOut(a["left_y"], (f.left.gaze_y,), f.left_owner),
            OscOut(a["right_x"], (f.right.gaze_x,), f.right_owner),
            OscOut(a["right_y"], (f.right.gaze_y,), f.right_owner),
            OscOut(a["left_lid"], (lid(f.left),), f.lid_left_owner, f.left.closed),
            OscOut(a["right_lid"], (lid(f.right),), f.lid_right_owner, f.right.closed),
        ]
    if dilation:
        out.append(OscOut(a["dilation"], (f.dilation,), f.leader))
    return out


def compose_v2(plan: TargetPlan, f: EyeFrame) -> list[OscOut]:
    return _compose_v2_like(plan, f, _lid_plain, dilation=True)


def compose_module(plan: TargetPlan, f: EyeFrame) -> list[OscOut]:
    """The VRCFT ETVR module's v2 parameters (it reads no dilation), lids in its widen/squeeze bands."""
    return _compose_v2_like(plan, f, lid_module, dilation=False)


def compose_native(plan: TargetPlan, f: EyeFrame) -> list[OscOut]:
    a = plan.address
    left, right = f.left, f.right
    if plan.native_look == "pitch_yaw":
        # VRChat: degrees, +pitch = down, +yaw = right.
        scale = plan.native_max_angle_deg
        look = (-left.gaze_y * scale, left.gaze_x * scale, -right.gaze_y * scale, right.gaze_x * scale)
        look_out = OscOut(a["pitch_yaw"], look, f.leader)
    else:
        look_out = OscOut(
            a["vec"], (left.gaze_x, left.gaze_y, NATIVE_VEC_Z, right.gaze_x, right.gaze_y, NATIVE_VEC_Z), f.leader
        )
    closed_amount = clamp(1.0 - f.openness, 0.0, 1.0)
    return [look_out, OscOut(a["closed"], (closed_amount,), f.leader, left.closed or right.closed)]


def compose_babble(plan: TargetPlan, f: EyeFrame) -> list[OscOut]:
    a = plan.address
    out: list[OscOut] = []
    for side, eye, owner, lid_owner in (
        ("left", f.left, f.left_owner, f.lid_left_owner),
        ("right", f.right, f.right_owner, f.lid_right_owner),
    ):
        out += [
            OscOut(a[f"{side}_x"], (eye.gaze_x,), owner),
            OscOut(a[f"{side}_y"], (eye.gaze_y,), owner),
            OscOut(a[f"{side}_lid"], (eye.openness,), lid_owner, eye.closed),
            OscOut(a[f"{side}_widen"], (eye.widen,), owner),
            OscOut(a[f"{side}_squint"], (eye.squeeze,), owner),
            # Babble's Brow is a brow lowerer: a squeeze pulls the brow down (it raises brows from Widen).
            OscOut(a[f"{side}_brow"], (eye.squeeze,), owner),
        ]
    return out


COMPOSERS: dict[str, Callable[[TargetPlan, EyeFrame], list[OscOut]]] = {
    "v1": compose_v1,
    "v2": compose_v2,
    "native": compose_native,
    "module": compose_module,
    "babble": compose_babble,
}


def compose(plan: TargetPlan, frame: EyeFrame) -> list[OscOut]:
    return COMPOSERS[plan.mode](plan, frame)

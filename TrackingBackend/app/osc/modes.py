"""Per output mode, which OSC messages an `EyeFrame` becomes (pure). The mapping table is in docs/osc.md.

A target's settings are resolved once into a `TargetPlan` (inherited fields filled, prefix applied to
every address), so composing an update is only arithmetic and tuple building.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

from app.config.models import DEFAULT_PORT_BY_MODE, OscConfig, OscMode, OscTargetConfig, TrackerPosition
from app.osc.compose import EyeFrame, EyeValues, FrameLayout, lid_module, lid_v1_expanded
from app.osc.messages import clamp

V2_PREFIX = "/avatar/parameters/v2/"
NATIVE_VEC = "/tracking/eye/LeftRightVec"
NATIVE_PITCH_YAW = "/tracking/eye/LeftRightPitchYaw"
NATIVE_CLOSED = "/tracking/eye/EyesClosedAmount"
NATIVE_VEC_Z = 1.0  # VRChat reads the vector's direction: z = 1 makes x, y = ±1 about ±45°


# Whose lid a message carries: its closing update repeats it (app.osc.output).
NOT_LID, LEFT_LID, RIGHT_LID, EITHER_LID = 0, 1, 2, 3


class MessageSpec(NamedTuple):
    """One message of a mode: address, its float arguments as expressions (see "composers" below), the eye
    whose process sends it, and whose lid it carries."""

    address: str
    args: tuple[str, ...]
    owner: TrackerPosition
    lid: int = NOT_LID

    @property
    def arg_count(self) -> int:
        return len(self.args)


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
# Each mode is one function of the frame's layout: its messages in order, each with its address, owner, lid
# and its arguments as Python expressions over the two sides' values (`LEFT_NAMES`, `RIGHT_NAMES`: each side's
# EyeValues after single-eye, mirror and sync blink). `compile_values` turns them into one function per layout
# for every update, and `app.osc.output` into one function that also sends this process's share: per result,
# in a process that sleeps between results, every call and object saved shows in its CPU. The expressions are
# this module's own text; addresses and numbers from the config never enter them (numbers as float literals).

EYE_NAMES = ("x", "y", "open", "dil", "widen", "squeeze")  # EyeValues' fields, in order
LEFT_NAMES = tuple(f"l_{name}" for name in EYE_NAMES)
RIGHT_NAMES = tuple(f"r_{name}" for name in EYE_NAMES)
# What the expressions may call, besides arithmetic.
EXPRESSION_FUNCTIONS: dict[str, object] = {
    "clamp": clamp,
    "lid_v1_expanded": lid_v1_expanded,
    "lid_module": lid_module,
}


def compile_function(source: str, name: str, namespace: dict[str, object]) -> Callable[..., Any]:
    """`name` defined by `source` (generated here from the mode tables), with `namespace` as its globals."""
    scope = {**EXPRESSION_FUNCTIONS, **namespace}
    exec(compile(source, f"<osc {name}>", "exec"), scope)
    return cast(Callable[..., Any], scope[name])


def compile_values(specs: list[MessageSpec]) -> Callable[[EyeValues, EyeValues], tuple[float, ...]]:
    """Every argument of every message of `specs`, flat, from the two sides' values."""
    arguments = ", ".join(arg for spec in specs for arg in spec.args)
    source = (
        "def values(left, right):\n"
        f"    {', '.join(LEFT_NAMES)} = left\n"
        f"    {', '.join(RIGHT_NAMES)} = right\n"
        f"    return ({arguments},)\n"
    )
    return cast(Callable[[EyeValues, EyeValues], tuple[float, ...]], compile_function(source, "values", {}))


def specs_v1(plan: TargetPlan, f: FrameLayout) -> list[MessageSpec]:
    a = plan.address
    if plan.lid_encoding == "expanded":
        left_lid, right_lid = (
            "lid_v1_expanded(l_open, l_widen, l_squeeze)",
            "lid_v1_expanded(r_open, r_widen, r_squeeze)",
        )
    else:
        left_lid, right_lid = "l_open", "r_open"
    return [
        MessageSpec(a["left_x"], ("l_x",), f.left_owner),
        MessageSpec(a["right_x"], ("r_x",), f.right_owner),
        MessageSpec(a["eyes_y"], ("(l_y + r_y) / 2.0",), f.leader),
        MessageSpec(a["left_lid"], (left_lid,), f.lid_left_owner, LEFT_LID),
        MessageSpec(a["right_lid"], (right_lid,), f.lid_right_owner, RIGHT_LID),
        MessageSpec(a["dilation"], ("(l_dil + r_dil) / 2.0",), f.leader),
    ]


def _specs_v2_like(
    plan: TargetPlan, f: FrameLayout, left_lid: str, right_lid: str, dilation: bool
) -> list[MessageSpec]:
    a = plan.address
    if f.single:
        specs = [
            MessageSpec(a["x"], ("l_x",), f.leader),
            MessageSpec(a["y"], ("l_y",), f.leader),
            MessageSpec(a["lid"], (left_lid,), f.leader, LEFT_LID),  # a single eye's values are on both sides
        ]
    else:
        specs = [
            MessageSpec(a["left_x"], ("l_x",), f.left_owner),
            MessageSpec(a["left_y"], ("l_y",), f.left_owner),
            MessageSpec(a["right_x"], ("r_x",), f.right_owner),
            MessageSpec(a["right_y"], ("r_y",), f.right_owner),
            MessageSpec(a["left_lid"], (left_lid,), f.lid_left_owner, LEFT_LID),
            MessageSpec(a["right_lid"], (right_lid,), f.lid_right_owner, RIGHT_LID),
        ]
    if dilation:
        specs.append(MessageSpec(a["dilation"], ("(l_dil + r_dil) / 2.0",), f.leader))
    return specs


def specs_v2(plan: TargetPlan, f: FrameLayout) -> list[MessageSpec]:
    return _specs_v2_like(plan, f, "l_open", "r_open", dilation=True)


def specs_module(plan: TargetPlan, f: FrameLayout) -> list[MessageSpec]:
    """The VRCFT ETVR module's v2 parameters (it reads no dilation), lids in its widen/squeeze bands."""
    left_lid, right_lid = "lid_module(l_open, l_widen, l_squeeze)", "lid_module(r_open, r_widen, r_squeeze)"
    return _specs_v2_like(plan, f, left_lid, right_lid, dilation=False)


def specs_native(plan: TargetPlan, f: FrameLayout) -> list[MessageSpec]:
    a = plan.address
    if plan.native_look == "pitch_yaw":
        # VRChat: degrees, +pitch = down, +yaw = right.
        scale = repr(float(plan.native_max_angle_deg))
        look = MessageSpec(
            a["pitch_yaw"], (f"-l_y * {scale}", f"l_x * {scale}", f"-r_y * {scale}", f"r_x * {scale}"), f.leader
        )
    else:
        z = repr(NATIVE_VEC_Z)
        look = MessageSpec(a["vec"], ("l_x", "l_y", z, "r_x", "r_y", z), f.leader)
    return [look, MessageSpec(a["closed"], ("clamp(1.0 - (l_open + r_open) / 2.0, 0.0, 1.0)",), f.leader, EITHER_LID)]


def specs_babble(plan: TargetPlan, f: FrameLayout) -> list[MessageSpec]:
    a = plan.address
    specs: list[MessageSpec] = []
    for side, owner, lid_owner, lid in (
        ("left", f.left_owner, f.lid_left_owner, LEFT_LID),
        ("right", f.right_owner, f.lid_right_owner, RIGHT_LID),
    ):
        v = side[0]
        specs += [
            MessageSpec(a[f"{side}_x"], (f"{v}_x",), owner),
            MessageSpec(a[f"{side}_y"], (f"{v}_y",), owner),
            MessageSpec(a[f"{side}_lid"], (f"{v}_open",), lid_owner, lid),
            MessageSpec(a[f"{side}_widen"], (f"{v}_widen",), owner),
            MessageSpec(a[f"{side}_squint"], (f"{v}_squeeze",), owner),
            # Babble's Brow is a brow lowerer: a squeeze pulls the brow down (it raises brows from Widen).
            MessageSpec(a[f"{side}_brow"], (f"{v}_squeeze",), owner),
        ]
    return specs


MODES: dict[str, Callable[[TargetPlan, FrameLayout], list[MessageSpec]]] = {
    "v1": specs_v1,
    "v2": specs_v2,
    "native": specs_native,
    "module": specs_module,
    "babble": specs_babble,
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
    specs = MODES[plan.mode](plan, frame.layout)
    values = compile_values(specs)(frame.left, frame.right)
    out: list[OscOut] = []
    at = 0
    for spec in specs:
        out.append(OscOut(spec.address, values[at : at + spec.arg_count], spec.owner, lid_closed(spec.lid, frame)))
        at += spec.arg_count
    return out

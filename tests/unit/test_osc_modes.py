"""OSC composition per mode: exact addresses, argument types and counts, who sends what, blinks."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from pythonosc.osc_message import OscMessage

from app.config.migrate import migrate
from app.config.models import EtvrConfig, OscConfig, TrackerPosition
from app.osc.compose import STALE_AFTER_S, EyeFrame, EyeSample, build_frame, fresh_eyes
from app.osc.modes import TargetPlan, compose, resolve_targets
from app.osc.output import BLINK_REPEATS, TargetEncoder
from app.runtime.results import ResultRecord

LEFT, RIGHT = TrackerPosition.LEFT_EYE, TrackerPosition.RIGHT_EYE
NOW = 100.0


def record(**values: float) -> ResultRecord:
    fields = {"processed_ts": NOW, "gaze_x": 0.0, "gaze_y": 0.0, "openness": 1.0, "dilation": 0.5}
    fields.update(values)
    return ResultRecord(**fields)


LEFT_REC = record(gaze_x=-0.4, gaze_y=0.2, openness=0.9, dilation=0.3, widen=0.5, squeeze=0.0)
RIGHT_REC = record(gaze_x=-0.2, gaze_y=0.4, openness=0.7, dilation=0.5, widen=0.0, squeeze=0.25)
BOTH = [EyeSample(LEFT, LEFT_REC), EyeSample(RIGHT, RIGHT_REC)]


def plan(mode: str, **target: object) -> TargetPlan:
    config = OscConfig.model_validate({"outputs": [{"mode": mode, **target}]})
    return resolve_targets(config)[0]


def frame(eyes: list[EyeSample] = BOTH, mirror: bool = False, sync: bool = False) -> EyeFrame:
    built = build_frame(eyes, mirror, sync)
    assert built is not None
    return built


def sent_by_both(p: TargetPlan, f: EyeFrame) -> list[OscMessage]:
    """What the two eye processes send together, parsed by python-osc."""
    datagrams = TargetEncoder(p).datagrams(f, LEFT) + TargetEncoder(p).datagrams(f, RIGHT)
    return [OscMessage(d) for d in datagrams]


def as_dict(messages: list[OscMessage]) -> dict[str, list[float]]:
    return {m.address: [float(p) for p in m.params] for m in messages}


def assert_floats(messages: list[OscMessage]) -> None:
    for m in messages:
        assert m.params and all(isinstance(p, float) and math.isfinite(p) for p in m.params), m.address


def test_v1_two_eyes_exact_addresses_and_averages() -> None:
    messages = sent_by_both(plan("v1"), frame())
    assert_floats(messages)
    assert Counter(m.address for m in messages) == dict.fromkeys(
        [
            "/avatar/parameters/LeftEyeX",
            "/avatar/parameters/RightEyeX",
            "/avatar/parameters/EyesY",
            "/avatar/parameters/LeftEyeLidExpandedSqueeze",
            "/avatar/parameters/RightEyeLidExpandedSqueeze",
            "/avatar/parameters/EyesDilation",
        ],
        1,
    ), "every message exactly once across both processes"
    values = as_dict(messages)
    assert values["/avatar/parameters/LeftEyeX"] == pytest.approx([-0.4])
    assert values["/avatar/parameters/RightEyeX"] == pytest.approx([-0.2])
    assert values["/avatar/parameters/EyesY"] == pytest.approx([0.3])
    assert values["/avatar/parameters/EyesDilation"] == pytest.approx([0.4])
    assert values["/avatar/parameters/LeftEyeLidExpandedSqueeze"] == pytest.approx([0.9])
    assert values["/avatar/parameters/RightEyeLidExpandedSqueeze"] == pytest.approx([0.7])


def test_who_sends_what_per_eye_and_leader() -> None:
    p, f = plan("v1"), frame()
    left = {OscMessage(d).address for d in TargetEncoder(p).datagrams(f, LEFT)}
    right = {OscMessage(d).address for d in TargetEncoder(p).datagrams(f, RIGHT)}
    assert right == {"/avatar/parameters/RightEyeX", "/avatar/parameters/RightEyeLidExpandedSqueeze"}
    assert "/avatar/parameters/EyesY" in left and "/avatar/parameters/EyesDilation" in left  # left leads


def test_stale_left_eye_drops_out_and_right_takes_over() -> None:
    stale_left = EyeSample(LEFT, record(processed_ts=NOW - STALE_AFTER_S - 0.01, gaze_x=0.9, openness=0.0))
    eyes = fresh_eyes([stale_left, EyeSample(RIGHT, RIGHT_REC)], NOW)
    assert [e.position for e in eyes] == [RIGHT]
    f = frame(eyes)
    p = plan("v1")
    assert TargetEncoder(p).datagrams(f, LEFT) == []
    values = as_dict([OscMessage(d) for d in TargetEncoder(p).datagrams(f, RIGHT)])
    assert len(values) == 6
    assert values["/avatar/parameters/LeftEyeX"] == values["/avatar/parameters/RightEyeX"] == pytest.approx([-0.2])
    assert values["/avatar/parameters/EyesY"] == pytest.approx([0.4])
    assert values["/avatar/parameters/LeftEyeLidExpandedSqueeze"] == pytest.approx([0.7])


def test_v2_two_eyes_and_single_eye_names() -> None:
    both = as_dict(sent_by_both(plan("v2"), frame()))
    v2 = "/avatar/parameters/v2/"
    assert set(both) == {
        v2 + n for n in ("EyeLeftX", "EyeLeftY", "EyeRightX", "EyeRightY", "EyeLidLeft", "EyeLidRight", "PupilDilation")
    }
    assert both[v2 + "EyeRightY"] == pytest.approx([0.4])
    assert both[v2 + "PupilDilation"] == pytest.approx([0.4])
    single = sent_by_both(plan("v2"), frame([EyeSample(LEFT, LEFT_REC)]))
    assert_floats(single)
    flat = {address: values[0] for address, values in as_dict(single).items()}
    assert flat == pytest.approx({v2 + "EyeX": -0.4, v2 + "EyeY": 0.2, v2 + "EyeLid": 0.9, v2 + "PupilDilation": 0.3})


def test_native_vec_is_one_message_with_both_eyes_and_closed_amount_averages() -> None:
    messages = sent_by_both(plan("native"), frame())
    assert_floats(messages)
    values = as_dict(messages)
    assert list(values) == ["/tracking/eye/LeftRightVec", "/tracking/eye/EyesClosedAmount"]
    assert values["/tracking/eye/LeftRightVec"] == pytest.approx([-0.4, 0.2, 1.0, -0.2, 0.4, 1.0])
    assert values["/tracking/eye/EyesClosedAmount"] == pytest.approx([1.0 - 0.8])


def test_native_pitch_yaw_in_degrees_with_the_configured_maximum() -> None:
    config = OscConfig.model_validate(
        {"native_look": "pitch_yaw", "native_max_angle_deg": 30, "outputs": [{"mode": "native"}]}
    )
    messages = sent_by_both(resolve_targets(config)[0], frame())
    values = as_dict(messages)
    assert "/tracking/eye/LeftRightVec" not in values, "one eye-look address only"
    # +pitch = down, +yaw = right
    assert values["/tracking/eye/LeftRightPitchYaw"] == pytest.approx([-6.0, -12.0, -12.0, -6.0], abs=1e-5)


def test_module_mode_is_v2_names_one_argument_each_with_expression_bands() -> None:
    p = plan("module")
    assert p.port == 8889
    messages = sent_by_both(p, frame())
    assert all(len(m.params) == 1 for m in messages)
    assert all(not d.startswith(b"#bundle") for d in TargetEncoder(p).datagrams(frame(), LEFT))
    values = as_dict(messages)
    v2 = "/avatar/parameters/v2/"
    assert v2 + "PupilDilation" not in values  # the module does not read it
    assert values[v2 + "EyeLidLeft"] == pytest.approx([0.95 * 0.9 + 0.1 * 0.5])  # widened: above 0.95
    assert values[v2 + "EyeLidRight"] == pytest.approx([0.95 * 0.7 - 0.25 * 0.3])  # squeezed: lowered


@pytest.mark.parametrize("prefix", ["", "/etvr"])
def test_babble_addresses_with_and_without_prefix(prefix: str) -> None:
    p = plan("babble", prefix=prefix)
    assert p.port == 8888
    messages = sent_by_both(p, frame())
    assert_floats(messages)
    values = as_dict(messages)
    expected = {
        f"{prefix}/{side}Eye{part}"
        for side in ("Left", "Right")
        for part in ("X", "Y", "Lid", "Widen", "Squint", "Brow")
    }
    assert set(values) == expected
    assert values[f"{prefix}/LeftEyeWiden"] == pytest.approx([0.5])
    assert values[f"{prefix}/RightEyeSquint"] == pytest.approx([0.25])
    assert values[f"{prefix}/RightEyeBrow"] == pytest.approx([0.25])
    assert values[f"{prefix}/RightEyeLid"] == pytest.approx([0.7])
    assert values[f"{prefix}/LeftEyeY"] == pytest.approx([0.2])


def test_v1_expanded_lids_carry_widen_and_squeeze() -> None:
    values = as_dict(sent_by_both(plan("v1", lid_encoding="expanded"), frame()))
    assert values["/avatar/parameters/LeftEyeLidExpandedSqueeze"] == pytest.approx([0.8 * 0.9 + 0.2 * 0.5])
    assert values["/avatar/parameters/RightEyeLidExpandedSqueeze"] == pytest.approx([0.8 * 0.7 * 0.75])


def test_out_of_range_and_nan_values_are_clamped_never_nan() -> None:
    wild = record(gaze_x=7.0, gaze_y=-3.0, openness=math.nan, dilation=-1.0, widen=9.0, squeeze=math.inf)
    f = frame([EyeSample(LEFT, wild)])
    for mode in ("v1", "v2", "native", "module", "babble"):
        for message in sent_by_both(plan(mode), f):
            assert all(math.isfinite(v) for v in message.params), (mode, message.address)
    values = as_dict(sent_by_both(plan("v1"), f))
    assert values["/avatar/parameters/LeftEyeX"] == [1.0]
    assert values["/avatar/parameters/EyesY"] == [-1.0]
    assert values["/avatar/parameters/EyesDilation"] == [0.0]
    assert 0.0 <= values["/avatar/parameters/LeftEyeLidExpandedSqueeze"][0] <= 1.0


def test_mirror_and_sync_blink() -> None:
    mirrored = as_dict(sent_by_both(plan("v1"), frame(mirror=True)))
    assert mirrored["/avatar/parameters/RightEyeX"] == mirrored["/avatar/parameters/LeftEyeX"] == pytest.approx([-0.4])
    synced = sent_by_both(plan("v1"), frame(sync=True))
    lids = as_dict(synced)
    assert lids["/avatar/parameters/LeftEyeLidExpandedSqueeze"] == pytest.approx([0.7])
    assert lids["/avatar/parameters/RightEyeLidExpandedSqueeze"] == pytest.approx([0.7])
    assert len(synced) == 6, "synced lids are sent once, by the leader"


def test_a_closing_lid_is_sent_several_times_then_once_per_update() -> None:
    p = plan("v1")
    encoder = TargetEncoder(p)
    lid = "/avatar/parameters/LeftEyeLidExpandedSqueeze"

    def lid_count(openness: float) -> int:
        f = frame([EyeSample(LEFT, record(openness=openness))])
        return sum(OscMessage(d).address == lid for d in encoder.datagrams(f, LEFT))

    assert lid_count(1.0) == 1
    assert lid_count(0.0) == BLINK_REPEATS >= 3  # the closing update
    assert lid_count(0.0) == 1  # still closed: once per update, values keep flowing
    assert lid_count(1.0) == 1
    assert lid_count(0.05) == BLINK_REPEATS  # the next blink again
    native = TargetEncoder(plan("native"))
    closed = [OscMessage(d) for d in native.datagrams(frame([EyeSample(LEFT, record(openness=0.0))]), LEFT)]
    assert [m.address for m in closed].count("/tracking/eye/EyesClosedAmount") == BLINK_REPEATS
    assert all(m.params == [1.0] for m in closed if m.address.endswith("EyesClosedAmount"))


def test_v4_file_single_target_migrates_to_outputs_0() -> None:
    document = {
        "version": 4,
        "osc": {"address": "127.0.0.2", "sending_port": 9100, "vrchat_native_tracking": True},
    }
    config = EtvrConfig.model_validate(migrate(document)[0])
    assert config.version == 6 and len(config.osc.outputs) == 1
    target = resolve_targets(config.osc)[0]
    assert (target.mode, target.host, target.port) == ("native", "127.0.0.2", 9100)
    # The GUI still steers it through the v4 names.
    config.osc.sending_port = 9200
    config.osc.vrchat_native_tracking = False
    target = resolve_targets(config.osc)[0]
    assert (target.mode, target.port) == ("v1", 9200)


def test_target_inheritance_rules() -> None:
    config = OscConfig.model_validate(
        {
            "address": "127.0.0.3",
            "sending_port": 9010,
            "outputs": [
                {"name": "legacy"},
                {"name": "babble", "mode": "babble"},
                {"name": "module", "mode": "module", "port": 9999, "address": "127.0.0.4"},
                {"name": "off", "mode": "v2", "enabled": False},
            ],
        }
    )
    plans = resolve_targets(config)
    assert [(p.name, p.mode, p.host, p.port) for p in plans] == [
        ("legacy", "v1", "127.0.0.3", 9010),
        ("babble", "babble", "127.0.0.3", 8888),
        ("module", "module", "127.0.0.4", 9999),
    ]
    config.enable_sending = False
    assert resolve_targets(config) == []


def test_the_native_switch_wins_over_mode() -> None:
    assert OscConfig.model_validate({"vrchat_native_tracking": True, "mode": "v2"}).mode == "native"
    assert OscConfig.model_validate({"vrchat_native_tracking": False, "mode": "native"}).mode == "v1"
    assert OscConfig.model_validate({"mode": "babble"}).mode == "babble"


@pytest.mark.parametrize("prefix", ["etvr", "/etvr/", "/a b"])
def test_bad_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match=r"prefix|OSC address"):
        OscConfig.model_validate({"outputs": [{"prefix": prefix}]})


def test_compose_covers_every_mode() -> None:
    for mode in ("v1", "v2", "native", "module", "babble"):
        assert compose(plan(mode), frame())

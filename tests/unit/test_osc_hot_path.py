"""The OSC process's per-update fast path against the reference: layout programs vs `compose`, the pipe
reader on a real pipe, and the board reader on a real result board."""

from __future__ import annotations

import itertools
import math
import os
from multiprocessing import Pipe

import pytest
from pythonosc.osc_message import OscMessage

from app.config.models import OscConfig, TrackerPosition
from app.osc.compose import LAYOUT_COUNT, TWO_EYES, EyeFrame, EyeValues, eye_values, frame_of
from app.osc.messages import encode_floats
from app.osc.modes import MODES, TargetPlan, compile_values, compose, resolve_targets
from app.osc.output import BLINK_REPEATS, TargetEncoder
from app.runtime.osc_process import RECORD_FIELDS, BoardEyeReader, ResultReader
from app.runtime.results import ROW_WIDTH, ResultBoard, ResultRecord, pack_result

LEFT, RIGHT = TrackerPosition.LEFT_EYE, TrackerPosition.RIGHT_EYE
OPEN_L = eye_values(-0.4, 0.2, 0.9, 0.3, 0.5, 0.0)
OPEN_R = eye_values(0.3, -0.6, 0.7, 0.5, 0.0, 0.25)
CLOSED = eye_values(0.1, 0.1, 0.05, 0.5, 0.0, 0.0)


def plans() -> list[TargetPlan]:
    out = []
    for mode in MODES:
        out.append(resolve_targets(OscConfig.model_validate({"outputs": [{"mode": mode, "prefix": "/p"}]}))[0])
    expanded = OscConfig.model_validate({"outputs": [{"mode": "v1", "lid_encoding": "expanded"}]})
    pitch_yaw = OscConfig.model_validate({"native_look": "pitch_yaw", "outputs": [{"mode": "native"}]})
    return [*out, resolve_targets(expanded)[0], resolve_targets(pitch_yaw)[0]]


def frames(left: EyeValues, right: EyeValues) -> list[EyeFrame]:
    """One frame of every layout."""
    built = [
        frame_of(left, None, False, False),
        frame_of(None, right, False, False),
        frame_of(left, right, True, False),
        frame_of(left, right, False, False),
        frame_of(left, right, False, True),
    ]
    assert all(f is not None for f in built)
    out = [f for f in built if f is not None]
    assert sorted(f.layout.code for f in out) == list(range(LAYOUT_COUNT))
    return out


def reference(plan: TargetPlan, frame: EyeFrame, own: TrackerPosition) -> list[bytes]:
    """What the encoder must send, from `compose` (first frame: a closed lid counts as closing)."""
    out = []
    for message in compose(plan, frame):
        if message.owner == own:
            out += [encode_floats(message.address, message.values)] * (BLINK_REPEATS if message.closed else 1)
    return out


@pytest.mark.parametrize("plan", plans(), ids=lambda p: f"{p.mode}-{p.lid_encoding}-{p.native_look}")
def test_layout_programs_send_exactly_what_compose_describes(plan: TargetPlan) -> None:
    for left, right in ((OPEN_L, OPEN_R), (CLOSED, OPEN_R), (OPEN_L, CLOSED), (CLOSED, CLOSED)):
        for frame, own in itertools.product(frames(left, right), (LEFT, RIGHT)):
            specs = MODES[plan.mode](plan, frame.layout)
            assert len(compile_values(specs)(frame.left, frame.right)) == sum(s.arg_count for s in specs)
            got = TargetEncoder(plan).datagrams(frame, own)
            assert sorted(got) == sorted(reference(plan, frame, own)), (frame.layout, own)
            for datagram in got:
                message = OscMessage(datagram)
                assert all(isinstance(p, float) and math.isfinite(p) for p in message.params)


@pytest.mark.parametrize("plan", plans(), ids=lambda p: f"{p.mode}-{p.lid_encoding}-{p.native_look}")
def test_open_senders_send_what_emit_sends_for_two_open_eyes(plan: TargetPlan) -> None:
    frame = frame_of(OPEN_L, OPEN_R, False, False)
    assert frame is not None and frame.layout is TWO_EYES
    for own in (LEFT, RIGHT):
        sent: list[bytes] = []
        own_first = (*OPEN_L, *OPEN_R) if own == LEFT else (*OPEN_R, *OPEN_L)
        count = TargetEncoder(plan).program(TWO_EYES, own).send_open(sent.append, _never, *own_first)
        assert sent == TargetEncoder(plan).datagrams(frame, own) and count == len(sent)
        assert sent or (plan.mode == "native" and own == RIGHT)  # native: the leader sends both eyes' messages


def test_an_open_sender_counts_a_refused_datagram_and_sends_the_rest() -> None:
    plan = resolve_targets(OscConfig.model_validate({"outputs": [{"mode": "babble"}]}))[0]
    sent: list[bytes] = []
    failures: list[OSError] = []

    def send(datagram: bytes) -> None:
        if len(sent) == 1 and not failures:
            raise ConnectionRefusedError("nothing listens")
        sent.append(datagram)

    count = TargetEncoder(plan).program(TWO_EYES, LEFT).send_open(send, failures.append, *OPEN_L, *OPEN_R)
    assert len(failures) == 1 and count == len(sent) == 5  # the left eye's six Babble messages, one refused


def _never(exc: OSError) -> None:
    raise AssertionError(f"unexpected send failure {exc!r}")


def test_both_processes_together_send_every_message_once_in_every_layout() -> None:
    for plan in plans():
        for frame in frames(OPEN_L, OPEN_R):
            both = TargetEncoder(plan).datagrams(frame, LEFT) + TargetEncoder(plan).datagrams(frame, RIGHT)
            assert sorted(both) == sorted(encode_floats(m.address, m.values) for m in compose(plan, frame))


def test_one_encoder_follows_layout_changes_and_remembers_lids_across_them() -> None:
    plan = resolve_targets(OscConfig.model_validate({"outputs": [{"mode": "v1"}]}))[0]
    encoder = TargetEncoder(plan)
    lid = "/avatar/parameters/LeftEyeLidExpandedSqueeze"

    def lids_sent(left: EyeValues, right: EyeValues | None) -> int:
        frame = frame_of(left, right, False, False)
        assert frame is not None
        return [OscMessage(d).address for d in encoder.datagrams(frame, LEFT)].count(lid)

    assert lids_sent(OPEN_L, OPEN_R) == 1
    assert lids_sent(CLOSED, None) == BLINK_REPEATS  # layout changed (right went stale) as the lid closed
    assert lids_sent(CLOSED, OPEN_R) == 1  # still closed in the two-eye layout: not a new blink
    assert lids_sent(OPEN_L, OPEN_R) == 1


def test_eye_values_clamps_and_replaces_nan_with_the_middle() -> None:
    values = eye_values(math.nan, 3.0, -0.5, math.inf, math.nan, -math.inf)
    assert values == (0.0, 1.0, 0.0, 1.0, 0.5, 0.0)
    assert eye_values(0.25, -1.0, 1.0, 0.0, 0.5, 0.75) == (0.25, -1.0, 1.0, 0.0, 0.5, 0.75)


def _record(i: int) -> ResultRecord:
    return ResultRecord(
        sequence=float(i),
        capture_ts=10.0 + i,
        processed_ts=10.5 + i,
        pupil_x=40.0 + i,
        gaze_x=0.01 * i,
        gaze_y=-0.02 * i,
        openness=0.5,
        dilation=0.25,
        widen=0.125,
        squeeze=0.0625,
        fps=90.0,
    )


def _fields(record: ResultRecord) -> tuple[float, ...]:
    return tuple(getattr(record, name) for name in RECORD_FIELDS)


def test_result_reader_on_a_real_pipe_one_record_a_backlog_and_a_split_frame() -> None:
    rx, tx = Pipe(duplex=False)
    reader = ResultReader(rx)
    try:
        assert reader.wait(0.0) == []
        tx.send_bytes(pack_result(_record(1)))
        assert reader.wait(1.0) == [_fields(_record(1))]
        for i in range(2, 6):  # a backlog: every record, in order, from one wake-up
            tx.send_bytes(pack_result(_record(i)))
        assert reader.wait(1.0) == [_fields(_record(i)) for i in range(2, 6)]
        if os.name == "posix":  # a frame arriving in two pieces is joined
            framed = len(pack_result(_record(6))).to_bytes(4, "big") + pack_result(_record(6))
            os.write(tx.fileno(), framed[:50])
            assert reader.wait(1.0) == []
            os.write(tx.fileno(), framed[50:])
            assert reader.wait(1.0) == [_fields(_record(6))]
        tx.close()
        with pytest.raises(EOFError):
            reader.wait(1.0)
    finally:
        rx.close()


def test_result_reader_without_poll_uses_the_connection() -> None:
    rx, tx = Pipe(duplex=False)
    reader = ResultReader(rx, use_poll=False)  # as on Windows
    try:
        assert reader.wait(0.0) == []
        for i in range(3):
            tx.send_bytes(pack_result(_record(i)))
        assert reader.wait(1.0) == [_fields(_record(i)) for i in range(3)]
    finally:
        rx.close()
        tx.close()


def test_result_reader_refuses_a_message_that_is_not_a_record() -> None:
    rx, tx = Pipe(duplex=False)
    try:
        tx.send_bytes(b"not a record")
        with pytest.raises(ValueError, match="unexpected message"):
            ResultReader(rx).wait(1.0)
    finally:
        rx.close()
        tx.close()


def test_board_eye_reader_reads_the_posted_fields_under_the_sequence_lock() -> None:
    board = ResultBoard()
    reader = BoardEyeReader(ResultBoard(board.shared), 3)
    assert reader.read() is None  # never posted
    board.post(3, _record(7))
    assert reader.read() == _fields(_record(7))
    board.post(3, _record(8))
    assert reader.read() == _fields(_record(8))
    doubles = memoryview(board.shared).cast("B").cast("d")
    doubles[3 * ROW_WIDTH] += 1.0  # a writer in the middle of a post (or killed in it)
    assert reader.read() is None
    board.clear(3)
    assert reader.read() is None

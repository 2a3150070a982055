"""The benchmark presets replay a pre-rendered loop: the same frames and truth as live rendering, cheaply."""

from __future__ import annotations

import numpy as np

from app.camera.base import CapturedFrame
from app.camera.virtual_eye import (
    PRESETS,
    REPLAY_LOOP_S,
    REPLAY_MAX_FPS,
    REPLAYED_PRESETS,
    EyeGroundTruth,
    GazeScript,
    VirtualEyeSource,
    render_eye,
)

BENCH60_FPS = 60.0


class ScriptClock:
    """A settable clock: the source's script time is whatever the test says."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def _open_unpaced(preset: str, clock: ScriptClock) -> VirtualEyeSource:
    source = VirtualEyeSource(preset, paced=False, clock=clock)
    source.open()
    return source


def _read(source: VirtualEyeSource) -> tuple[np.ndarray, EyeGroundTruth]:
    frame = source.read(1.0)
    assert isinstance(frame, CapturedFrame)
    assert isinstance(frame.truth, EyeGroundTruth)
    return frame.gray, frame.truth


def test_replayed_frames_equal_live_rendering_of_the_same_script_time() -> None:
    clock = ScriptClock()
    source = _open_unpaced("bench60", clock)
    script = GazeScript(0)
    rng = np.random.default_rng(0)  # the loop renders frame after frame from the source's seed
    for index in range(4):
        clock.now_s = index / BENCH60_FPS
        gray, truth = _read(source)
        expected_gray, expected_truth = render_eye(script.state_at(index / BENCH60_FPS), PRESETS["bench60"], rng)
        assert np.array_equal(gray, expected_gray)
        assert truth == expected_truth


def test_replay_wraps_after_one_loop_with_the_same_frame_and_truth() -> None:
    clock = ScriptClock()
    source = _open_unpaced("bench60", clock)
    clock.now_s = 10 / BENCH60_FPS
    first_gray, first_truth = _read(source)
    clock.now_s = REPLAY_LOOP_S + 10 / BENCH60_FPS
    again_gray, again_truth = _read(source)
    assert np.array_equal(first_gray, again_gray)
    assert first_truth == again_truth
    # Each read hands out its own array: the camera loop may keep or modify it.
    again_gray[:] = 0
    assert not np.array_equal(_read(source)[0], again_gray)


def test_an_unthrottled_reader_sees_the_eye_move_at_its_scripted_speed() -> None:
    """Faster than the loop's frame step, reads repeat a frame until script time reaches the next one."""
    clock = ScriptClock()
    source = _open_unpaced("unthrottled", clock)
    step_s = 1.0 / REPLAY_MAX_FPS
    clock.now_s = 5 * step_s
    first = _read(source)[1]
    clock.now_s = 5.4 * step_s
    assert _read(source)[1] == first
    clock.now_s = 6 * step_s
    assert _read(source)[1] != first
    assert _read(source)[1].state == GazeScript(0).state_at(6 * step_s)


def test_only_the_pipeline_benchmark_presets_replay() -> None:
    """Accuracy presets render every frame live, and the step response keeps its live gaze jumps."""
    assert {"bench60", "bench90", "bench120", "unthrottled"} == REPLAYED_PRESETS
    clock = ScriptClock()
    source = _open_unpaced("step", clock)
    gaze_x = []
    for script_time_s in (1.99, 2.01, 2 * REPLAY_LOOP_S + 1.99, 2 * REPLAY_LOOP_S + 2.01):
        clock.now_s = script_time_s
        gaze_x.append(_read(source)[1].state.gaze_x)
    assert gaze_x == [-0.5, 0.5, -0.5, 0.5]


def test_only_a_source_without_a_clock_of_its_own_waits_for_the_reader() -> None:
    from app.camera.factory import make_source

    assert make_source("virtual:unthrottled").waits_for_reader, "faster than any camera: paced by the tracker"
    assert not make_source("virtual:bench90").waits_for_reader, "a 90 fps camera keeps its own time"
    assert not make_source("virtual").waits_for_reader
    assert VirtualEyeSource("bench90", paced=False).waits_for_reader
    assert not make_source("http://127.0.0.1:9/stream").waits_for_reader


def test_a_camera_that_goes_through_presets_keeps_few_presets_layers() -> None:
    from app.camera.virtual_eye import LAYER_CACHE_PRESETS, _layers

    for name in ("bench60", "bench90", "bench120", "unthrottled", "default"):
        source = VirtualEyeSource(name)
        source.open()
        assert source.read(1.0) is not None
        source.close()
    assert _layers.cache_info().currsize <= LAYER_CACHE_PRESETS == 2

"""The benchmarks' real-eye sources: a clip's frames streamed by the fake OpenIris camera, and `clip:NAME` presets."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from benchmarks._accuracy_sets import clip_paths
from benchmarks._pipeline_feeds import FakeCameraProcess, clip_jpegs
from benchmarks.instructions import main as instructions_main

from app.camera.mjpeg_http import MjpegHttpSource


def _write_video(path: Path, frames: list[np.ndarray]) -> None:
    height, width = frames[0].shape
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 60.0, (width, height), False)
    for frame in frames:
        writer.write(frame)
    writer.release()


def test_a_clips_frames_become_the_fake_cameras_jpegs_in_order(tmp_path: Path) -> None:
    # Each frame a different flat grey: the decoded JPEGs must come back in the clip's order and size.
    levels = [40, 90, 140, 190, 240]
    video = tmp_path / "eye.avi"
    _write_video(video, [np.full((54, 104), level, np.uint8) for level in levels])

    jpegs = clip_jpegs(video, 3)

    assert len(jpegs) == 3
    decoded = [np.asarray(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)) for jpeg in jpegs]
    assert all(image.shape == (54, 104) for image in decoded)
    assert [round(float(image.mean()) / 10) * 10 for image in decoded] == levels[:3]


def test_a_clip_with_no_readable_frame_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(RuntimeError, match="no frame could be read"):
        clip_jpegs(broken, 10)


def test_instructions_skips_a_clip_preset_it_cannot_find(capsys: pytest.CaptureFixture[str]) -> None:
    assert instructions_main(["--quick", "--presets", "bench90,clip:no-such-clip"]) == 0
    out = capsys.readouterr().out
    assert "clip:no-such-clip skipped" in out and "the child ran bench90 in" in out


@pytest.mark.skipif(not clip_paths(), reason="../shared/data has no eye clips")
def test_instructions_runs_a_real_clip_preset(capsys: pytest.CaptureFixture[str]) -> None:
    name = clip_paths()[0].name[:5]
    assert instructions_main(["--quick", "--presets", f"clip:{name}"]) == 0
    assert f"the child ran clip:{name} in" in capsys.readouterr().out


def test_the_fake_camera_streams_a_clip_over_http(tmp_path: Path) -> None:
    video = tmp_path / "eye.avi"
    _write_video(video, [np.full((54, 104), level, np.uint8) for level in (60, 120, 180)])
    # Slow enough that the reader, which takes the newest frame, never skips one (all three levels must show).
    camera = FakeCameraProcess(20.0, 3, video)
    try:
        source = MjpegHttpSource(camera.url)
        source.open()
        try:
            frames = [frame for frame in (source.read(5.0) for _ in range(6)) if frame is not None]
        finally:
            source.close()
    finally:
        camera.close()
    assert len(frames) >= 3
    assert all(frame.gray.shape == (54, 104) for frame in frames)
    # The clip loops: its three levels come round again.
    assert {round(float(frame.gray.mean()) / 10) * 10 for frame in frames} == {60, 120, 180}

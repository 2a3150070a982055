from __future__ import annotations

import cv2
import numpy as np
import pytest

from app.camera.base import GrayImage
from app.camera.preprocess import (
    Preprocessor,
    RoiRect,
    clamp_roi,
    map_raw_to_roi,
    map_roi_to_raw,
)
from app.config.models import CameraConfig


def _frame(width: int = 80, height: int = 60) -> GrayImage:
    frame = np.full((height, width), 120, dtype=np.uint8)
    frame[10, 20] = 255  # a marker whose position we follow
    return frame


def _marker(image: GrayImage) -> tuple[int, int]:
    y, x = np.unravel_index(int(np.argmax(image)), image.shape)
    return int(x), int(y)


def test_identity_is_a_view_of_the_whole_frame() -> None:
    frame = _frame()
    roi, info = Preprocessor().apply(frame)
    assert roi.shape == frame.shape and np.shares_memory(roi, frame)
    assert info.roi == RoiRect(0, 0, 80, 60) and not info.roi_clamped
    assert info.roi_to_raw(20, 10) == (20, 10)


@pytest.mark.parametrize(
    ("angle", "expected_marker"),
    [
        (90, (10, 39)),  # counter-clockwise: (x, y) -> (y, W-1-x) on a square frame
        (180, (39, 49)),
        (270, (49, 20)),
        (-90, (49, 20)),
    ],
)
def test_right_angles_on_a_square_frame(angle: float, expected_marker: tuple[int, int]) -> None:
    frame = _frame(60, 60)
    out, info = Preprocessor(rotation_deg=angle).apply(frame)
    assert out.shape == (60, 60)
    assert _marker(out) == expected_marker
    assert info.roi_to_raw(*_marker(out)) == pytest.approx((20, 10))


def test_fast_right_angles_match_the_general_warp_exactly() -> None:
    frame = np.random.default_rng(3).integers(0, 256, size=(48, 48), dtype=np.uint8)
    for angle in (90.0, 180.0, 270.0):
        fast, _ = Preprocessor(rotation_deg=angle).apply(frame)
        general, _ = Preprocessor(rotation_deg=angle + 1e-7).apply(frame)
        assert np.array_equal(fast, general)
    assert np.array_equal(
        Preprocessor(rotation_deg=90).apply(frame)[0], cv2.rotate(frame, cv2.ROTATE_90_COUNTERCLOCKWISE)
    )


def test_non_square_frame_keeps_its_size_at_90_degrees() -> None:
    frame = _frame(80, 60)
    out, info = Preprocessor(rotation_deg=90).apply(frame)
    assert out.shape == (60, 80)
    x, y = info.raw_to_roi(20, 10)
    assert out[round(y), round(x)] > 200
    assert info.roi_to_raw(x, y) == pytest.approx((20, 10))


def test_arbitrary_angle_rotates_about_the_centre_and_fills_corners_brightly() -> None:
    frame = np.full((61, 61), 100, dtype=np.uint8)
    cv2.circle(frame, (45, 30), 3, 0, -1)  # a dark disc 15 px right of the centre
    out, info = Preprocessor(rotation_deg=30).apply(frame)
    ys, xs = np.nonzero(out < 50)
    centre = (float(xs.mean()), float(ys.mean()))
    expected = (30 + 15 * np.cos(np.radians(30)), 30 - 15 * np.sin(np.radians(30)))
    assert centre == pytest.approx(expected, abs=0.5)
    assert info.roi_to_raw(*centre) == pytest.approx((45, 30), abs=0.5)
    assert out[0, 0] > 100  # the uncovered corner is brighter than the frame, never pupil-dark


def test_flips_are_image_flips_and_map_back() -> None:
    frame = _frame()
    out, info = Preprocessor(flip_x=True).apply(frame)
    assert _marker(out) == (59, 10)
    out, info = Preprocessor(flip_x=True, flip_y=True).apply(frame)
    assert _marker(out) == (59, 49)
    assert info.roi_to_raw(59, 49) == pytest.approx((20, 10))


def test_roi_crop_and_mapping_back_with_rotation() -> None:
    frame = _frame(60, 60)
    out, info = Preprocessor(rotation_deg=90, roi_x=5, roi_y=30, roi_w=20, roi_h=15).apply(frame)
    assert out.shape == (15, 20) and info.roi == RoiRect(5, 30, 20, 15) and not info.roi_clamped
    assert (info.roi.x1, info.roi.y1) == (25, 45) and np.shares_memory(out, info.rotated)
    assert _marker(out) == (5, 9)  # rotated marker (10, 39) minus the ROI origin
    assert info.roi_to_raw(5, 9) == pytest.approx((20, 10))
    points = np.array([[0.0, 0.0], [19.0, 14.0], [5.0, 9.0]])
    assert np.allclose(map_raw_to_roi(map_roi_to_raw(points, info), info), points)


def test_roi_outside_the_frame_is_clamped_and_reported() -> None:
    frame = _frame(80, 60)
    out, info = Preprocessor(roi_x=70, roi_y=50, roi_w=40, roi_h=40).apply(frame)
    assert out.shape == (10, 10) and info.roi == RoiRect(70, 50, 10, 10) and info.roi_clamped
    out, info = Preprocessor(roi_x=500, roi_y=500, roi_w=40, roi_h=40).apply(frame)
    assert out.shape == (60, 80) and info.roi_clamped
    assert clamp_roi(0, 0, 0, 0, 80, 60) == (RoiRect(0, 0, 80, 60), False)
    assert clamp_roi(10, 0, 0, 20, 80, 60) == (RoiRect(0, 0, 80, 20), False)
    assert clamp_roi(-5, 10, 20, 20, 80, 60) == (RoiRect(0, 10, 15, 20), True)


def test_plan_is_cached_per_frame_size() -> None:
    pre = Preprocessor(rotation_deg=12.5, roi_w=30, roi_h=30)
    _, small = pre.apply(_frame(40, 40))
    _, large = pre.apply(_frame(80, 60))
    assert pre.apply(_frame(40, 40))[1].geometry is small.geometry
    assert (small.geometry.frame_width_px, large.geometry.frame_width_px) == (40, 80)


def test_info_carries_the_full_rotated_frame_for_previews() -> None:
    frame = np.random.default_rng(5).integers(0, 256, size=(70, 90), dtype=np.uint8)
    cropped, info = Preprocessor(rotation_deg=33, roi_x=10, roi_y=20, roi_w=40, roi_h=30).apply(frame)
    full, _ = Preprocessor(rotation_deg=33).apply(frame)
    assert info.rotated.shape == (70, 90) and np.array_equal(info.rotated, full)
    assert np.array_equal(cropped, full[20:50, 10:50])
    assert tuple(info.roi) == (10, 20, 40, 30)


def test_from_config_leaves_gaze_flips_to_the_tracker() -> None:
    camera = CameraConfig(rotation=90, flip_x_axis=True, roi_x=4, roi_y=5, roi_w=30, roi_h=20)
    plain = Preprocessor.from_config(camera)
    assert (plain.rotation_deg, plain.flip_x, plain.roi_w) == (90.0, False, 30)
    assert Preprocessor.from_config(camera, image_flips=True).flip_x

"""`main.py analyze` over a short generated video and a folder of images."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2

from app.analyze import main
from tests.unit.test_tracking_pupil import draw_eye


def test_analyze_writes_one_row_per_video_frame(tmp_path: Path) -> None:
    video = tmp_path / "eye.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 30.0, (240, 240))
    centres = [(100.0 + 3 * i, 110.0) for i in range(10)]
    for i, (cx, cy) in enumerate(centres):
        writer.write(cv2.cvtColor(draw_eye(cx, cy, seed=i), cv2.COLOR_GRAY2BGR))
    writer.release()
    out = tmp_path / "out.csv"
    assert main([str(video), "--csv", str(out)]) == 0
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [int(r["frame"]) for r in rows] == list(range(10))
    for row, (cx, cy) in zip(rows, centres, strict=True):
        assert row["source"] == "eye.avi"
        assert abs(float(row["pupil_x"]) - cx) < 1.5 and abs(float(row["pupil_y"]) - cy) < 1.5
        assert 0.0 <= float(row["openness"]) <= 1.0 and row["blink"] in ("0", "1")


def test_analyze_folder_in_name_order_with_empty_fields_when_nothing_is_found(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "b.png"), draw_eye(120.0, 120.0))
    cv2.imwrite(str(folder / "a.png"), draw_eye(120.0, 120.0) * 0 + 128)
    out = tmp_path / "out.csv"
    config = tmp_path / "tracker.json"
    config.write_text('{"algorithm": {"algorithm_order": ["HSRAC"]}}')
    assert main([str(folder), "--csv", str(out), "--tracker-config", str(config)]) == 0
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [r["source"] for r in rows] == ["a.png", "b.png"]
    assert rows[0]["pupil_x"] == "" and rows[1]["pupil_x"] != ""

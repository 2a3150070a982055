"""Recording a tracker's raw frames to a video file in the data dir, read back by OpenCV."""

from __future__ import annotations

import time
from pathlib import Path

import cv2

from tests.support.service import Service, wait_until


def test_record_raw_frames_to_the_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with Service(tmp_path / "tracker-config.json", env={"ETVR_DATA_DIR": str(data_dir)}) as service:
        service.post(
            "/etvr/config",
            json={
                "trackers": [
                    {
                        "name": "Left Eye",
                        "tracker_position": "LEFT_EYE",
                        "camera": {"capture_source": "virtual", "roi_w": 100, "roi_h": 80},
                    },
                ]
            },
        )
        uuid = service.get("/etvr/config/trackers").json()[0]["uuid"]
        assert service.post(f"/etvr/trackers/{uuid}/record/start").status_code == 409, "not running yet"
        service.get("/etvr/start")
        assert wait_until(lambda: service.get("/etvr/trackers/status").json()[0]["fps"] > 30, 10.0)
        started = service.post(f"/etvr/trackers/{uuid}/record/start")
        assert started.status_code == 200 and started.json()["recording"] is True
        time.sleep(1.0)
        stopped = service.post(f"/etvr/trackers/{uuid}/record/stop").json()
        assert stopped["recording"] is False and stopped["frames"] > 30
        assert service.post(f"/etvr/trackers/{uuid}/record/stop").status_code == 409
        assert service.post("/etvr/trackers/no-such/record/start").status_code == 404

    path = Path(stopped["path"])
    assert path.parent == data_dir / "recordings" and path.name.startswith("Left-Eye-")
    video = cv2.VideoCapture(str(path))
    frames = 0
    while True:
        ok, frame = video.read()
        if not ok:
            break
        assert frame.shape[:2] == (240, 240), "raw frames: before the ROI"
        frames += 1
    video.release()
    assert frames >= stopped["frames"] - 2

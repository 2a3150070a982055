"""Config changes reach the worker processes without restarting them, whether made by API or by hand."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.support.service import Service, wait_until


def camera_of(service: Service) -> dict[str, Any]:
    tracker = service.get("/etvr/trackers/status").json()[0]
    camera: dict[str, Any] = tracker["processes"]["camera"]
    return camera


def test_hand_edit_and_api_change_reach_the_camera_process_without_a_restart(tmp_path: Path) -> None:
    with Service(tmp_path / "tracker-config.json") as service:
        service.post(
            "/etvr/config",
            json={
                "trackers": [
                    {"name": "L", "tracker_position": "LEFT_EYE", "camera": {"capture_source": "virtual"}},
                ]
            },
        )
        service.get("/etvr/start")
        assert wait_until(lambda: camera_of(service).get("state") == "connected", 10.0)
        pid = camera_of(service)["pid"]

        # By hand: the user edits the file while the service runs.
        doc = json.loads(service.config_path.read_text())
        doc["trackers"][0]["camera"]["capture_source"] = "virtual:easy"
        service.config_path.write_text(json.dumps(doc))
        edited = time.monotonic()
        assert wait_until(lambda: camera_of(service).get("source") == "virtual:easy", 3.0)
        assert time.monotonic() - edited < 1.5, "a new capture_source takes effect within about a second"
        assert wait_until(
            lambda: service.get("/etvr/config").json()["trackers"][0]["camera"]["capture_source"] == "virtual:easy",
            1.5,
        ), "the main process adopts the hand edit too"

        # By API: the ROI reaches the camera process's preprocessing.
        uuid = doc["trackers"][0]["uuid"]
        service.post(
            "/etvr/config/tracker",
            params={"uuid": uuid},
            json={"camera": {"roi_x": 20, "roi_y": 30, "roi_w": 150, "roi_h": 100}},
        )
        assert wait_until(lambda: camera_of(service).get("roi") == [20, 30, 150, 100], 3.0)
        assert camera_of(service)["pid"] == pid and camera_of(service)["restarts"] == 0


def test_invalid_hand_edit_is_ignored_then_kept_aside_before_the_next_save(tmp_path: Path) -> None:
    with Service(tmp_path / "tracker-config.json") as service:
        before = service.get("/etvr/config").json()
        service.config_path.write_text('{"osc": {"sending_port": "not a port"')  # a half-saved edit
        time.sleep(0.5)
        assert service.get("/etvr/config").json() == before, "the running config is kept"
        assert service.post("/etvr/config", json={"debug": True}).status_code == 200
        health = service.get("/etvr/health").json()
        kept = [p for p in health["config_problems"] if "invalid edit" in p["message"]]
        assert kept and Path(kept[0]["backup_path"]).read_text() == '{"osc": {"sending_port": "not a port"'
        assert json.loads(service.config_path.read_text())["debug"] is True

"""Worker processes: restarted when they die, stopped within bounds, never outliving the main process."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.service import Service, wait_until

TWO_IDLE_TRACKERS = {
    "trackers": [
        {"tracker_position": "LEFT_EYE", "name": "L", "camera": {"capture_source": ""}},
        {"tracker_position": "RIGHT_EYE", "name": "R", "camera": {"capture_source": ""}},
    ]
}


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    with Service(tmp_path / "tracker-config.json") as running:
        assert running.post("/etvr/config", json=TWO_IDLE_TRACKERS).status_code == 200
        yield running


def worker_pids(service: Service) -> dict[str, int]:
    pids = {}
    for tracker in service.get("/etvr/trackers/status").json():
        for kind, info in tracker["processes"].items():
            if info["pid"]:
                pids[f"{tracker['name']}:{kind}"] = info["pid"]
    return pids


def alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]


def test_start_spawns_three_workers_per_tracker_and_stop_ends_them(service: Service) -> None:
    assert service.get("/etvr/start").json() is True
    pids = worker_pids(service)
    assert len(pids) == 6 and len(set(pids.values())) == 6
    assert wait_until(
        lambda: all(
            p["state"] != "starting"
            for t in service.get("/etvr/trackers/status").json()
            for p in t["processes"].values()
        ),
        10.0,
    )
    started = time.monotonic()
    assert service.get("/etvr/stop").json() is True
    assert time.monotonic() - started < 3.0
    assert alive(list(pids.values())) == []


def test_killed_worker_is_restarted_within_a_second(service: Service) -> None:
    service.get("/etvr/start")
    for kind in ("camera", "tracker", "osc"):
        old = worker_pids(service)[f"L:{kind}"]
        os.kill(old, signal.SIGKILL)
        killed_at = time.monotonic()

        def restarted(old_pid: int = old, k: str = kind) -> bool:
            left = service.get("/etvr/trackers/status").json()[0]["processes"][k]
            return bool(left["alive"] and left["pid"] != old_pid and left["restarts"] >= 1)

        assert wait_until(restarted, 5.0, 0.02), f"{kind} was not restarted"
        assert time.monotonic() - killed_at < 1.0 + 0.5  # restart budget plus polling slack
    assert worker_pids(service)["R:camera"], "the other tracker is untouched"


def test_kill_9_of_the_main_process_leaves_no_orphan(service: Service) -> None:
    service.get("/etvr/start")
    assert len(worker_pids(service)) == 6
    descendants = [p.pid for p in service.descendants()]
    assert len(descendants) >= 7  # six workers, the manager, the shared-memory resource tracker
    assert service.process is not None
    os.kill(service.process.pid, signal.SIGKILL)
    service.process.wait(5)
    assert wait_until(lambda: not alive(descendants), 3.0), f"orphans left: {alive(descendants)}"


def test_sigterm_stops_cleanly_within_3_s(service: Service) -> None:
    service.get("/etvr/start")
    descendants = [p.pid for p in service.descendants()]
    assert service.process is not None
    started = time.monotonic()
    service.process.send_signal(signal.SIGTERM)
    # uvicorn re-raises the signal after its graceful shutdown, so the exit status names SIGTERM.
    assert service.process.wait(5) in (0, -signal.SIGTERM)
    assert time.monotonic() - started < 3.0
    assert "tracker L stopped" in service.log() and "app.api.app: stopped" in service.log()
    assert wait_until(lambda: not alive(descendants), 1.0), f"left: {alive(descendants)}"


def test_affinity_mask_pins_the_workers(tmp_path: Path) -> None:
    if not hasattr(psutil.Process(), "cpu_affinity"):
        pytest.skip("this OS has no CPU affinity")
    with Service(tmp_path / "tracker-config.json") as service:
        service.post("/etvr/config", json={**TWO_IDLE_TRACKERS, "affinity_mask": "0x1"})
        service.get("/etvr/start")
        pids = list(worker_pids(service).values())
        assert len(pids) == 6

        def pinned() -> bool:
            return all(psutil.Process(pid).cpu_affinity() == [0] for pid in pids)

        assert wait_until(pinned, 10.0)


def test_demo_mode_starts_two_virtual_eye_trackers_at_once(tmp_path: Path) -> None:
    with Service(tmp_path / "demo-config.json", args=["--demo"]) as service:
        assert service.get("/etvr/status").json() is True
        trackers = service.get("/etvr/trackers/status").json()
        running = [t for t in trackers if t["running"]]
        assert {t["tracker_position"] for t in running} == {"LEFT_EYE", "RIGHT_EYE"}
        assert all(t["enabled"] for t in running)
        sources = {t["camera"]["capture_source"] for t in service.get("/etvr/config/trackers").json() if t["enabled"]}
        assert sources == {"virtual"}
        assert wait_until(
            lambda: all(t["fps"] > 30 for t in service.get("/etvr/trackers/status").json() if t["running"]), 15.0
        )


def mapped_libraries(pid: int) -> str:
    with open(f"/proc/{pid}/maps") as maps:
        return maps.read()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux's /proc/<pid>/maps")
def test_main_process_never_loads_opencv_or_numpy_while_tracking(tmp_path: Path) -> None:
    # OpenCV and numpy are about 36 MB of each process that loads them; only the camera and tracker workers need them
    # (#7's memory target).
    with Service(tmp_path / "demo-config.json", args=["--demo"]) as service:
        assert wait_until(
            lambda: all(t["fps"] > 30 for t in service.get("/etvr/trackers/status").json() if t["running"]), 15.0
        )
        # A watched preview: the workers draw and encode it, the main process only relays the JPEG bytes.
        uuid = next(t["uuid"] for t in service.get("/etvr/trackers/status").json() if t["running"])
        with (
            httpx.Client(timeout=10.0) as client,
            client.stream("GET", f"{service.url}/etvr/feed/{uuid}/algorithm") as feed,
        ):
            assert feed.status_code == 200
            received = b""
            for chunk in feed.iter_bytes():
                received += chunk
                if received.count(b"--frame") >= 2:
                    break
            assert b"image/jpeg" in received and b"x-preview: offline" not in received.lower()
        assert service.process is not None
        main_maps = mapped_libraries(service.process.pid)
        assert "cv2" not in main_maps and "_multiarray_umath" not in main_maps
        workers = [mapped_libraries(pid) for name, pid in worker_pids(service).items() if not name.endswith(":osc")]
        assert len(workers) == 4 and all("cv2" in maps and "_multiarray_umath" in maps for maps in workers)

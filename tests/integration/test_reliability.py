"""Fault injection: concurrent updates, kills during config writes, a full or read-only config dir,
and cameras that misbehave while the other tracker keeps going."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from app.config.store import read_config_file
from tests.fakes.jpeg import make_jpegs
from tests.fakes.openiris_http import FakeOpenIrisHttpServer, StreamFaults
from tests.support.service import REPO_ROOT, Service, wait_until

WRITER_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from app.config.store import ConfigStore
store = ConfigStore(Path(sys.argv[1]))
store.load()
i = 0
print("ready", flush=True)
while True:
    i += 1
    store.update({"osc": {"sending_port": 9000 + i % 500}, "trackers": [
        {"name": "x" * (i % 300), "tracker_position": "LEFT_EYE"}] * (1 + i % 2)})
"""


def test_100_concurrent_updates_lose_nothing(tmp_path: Path) -> None:
    with Service(tmp_path / "tracker-config.json") as service:

        def create(index: int) -> int:
            return service.client.put("/etvr/config/tracker", json={"name": f"spare-{index}"}).status_code

        with ThreadPoolExecutor(max_workers=16) as pool:
            codes = list(pool.map(create, range(100)))
        assert codes == [200] * 100
        in_memory = {t["name"] for t in service.get("/etvr/config/trackers").json()}
        on_disk = {t.name for t in read_config_file(service.config_path).config.trackers}
        expected = {f"spare-{i}" for i in range(100)} | {"Left Eye", "Right Eye", "Mouth"}
        assert in_memory == on_disk == expected


def kill_during_writes(tmp_path: Path, kills: int) -> None:
    path = tmp_path / "tracker-config.json"
    rng = random.Random(7)
    for _ in range(kills):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER_SCRIPT, str(path), str(REPO_ROOT / "TrackingBackend")],
            stdout=subprocess.PIPE,
        )
        assert writer.stdout is not None and writer.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.0, 0.05))
        writer.send_signal(signal.SIGKILL)
        writer.wait(5)
        writer.stdout.close()
        parsed = read_config_file(path)  # raises if the file is partial or invalid
        assert parsed.config.osc.sending_port >= 9000
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "tracker-config.json"]
    # A kill between mkstemp and rename can leave a hidden temp file; never a damaged config.
    assert all(name.startswith(".tracker-config.json.") for name in leftovers)


def test_killed_during_config_writes_the_file_stays_valid(tmp_path: Path) -> None:
    kill_during_writes(tmp_path, kills=15)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_killed_during_config_writes_1000_times(tmp_path: Path) -> None:
    kill_during_writes(tmp_path, kills=1000)


@contextlib.contextmanager
def tiny_filesystem(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root on Linux")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=False, capture_output=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_full_config_dir_keeps_the_service_running_and_says_so(tmp_path: Path) -> None:
    with tiny_filesystem(tmp_path / "small", "64k") as folder:
        with Service(folder / "tracker-config.json", log_path=tmp_path / "service.log") as service:
            assert service.get("/etvr/health").json()["persisted"] is True
            filler = folder / "filler.bin"
            with contextlib.suppress(OSError), filler.open("wb") as handle:
                handle.write(b"\0" * 1_000_000)
            response = service.post("/etvr/config", json={"osc": {"sending_port": 9555}})
            assert response.status_code == 200 and response.json()["osc"]["sending_port"] == 9555
            health = service.get("/etvr/health").json()
            assert health["persisted"] is False and "memory only" in health["persist_error"]
            assert service.get("/etvr/config/save").status_code == 503
            assert "could not save" in service.log()
            filler.unlink()
            service.post("/etvr/config", json={"debug": True})
            assert service.get("/etvr/health").json()["persisted"] is True
            assert read_config_file(service.config_path).config.osc.sending_port == 9555


def test_read_only_config_dir_keeps_the_service_running(tmp_path: Path) -> None:
    if shutil.which("chattr") is None:
        pytest.skip("chattr not available")
    folder = tmp_path / "ro"
    folder.mkdir()
    with Service(folder / "tracker-config.json", log_path=tmp_path / "service.log") as service:
        if subprocess.run(["chattr", "+i", str(folder)], check=False, capture_output=True).returncode != 0:
            pytest.skip("this filesystem has no immutable attribute")
        try:
            assert service.post("/etvr/config", json={"debug": True}).status_code == 200
            assert service.get("/etvr/config").json()["debug"] is True
            assert service.get("/etvr/health").json()["persisted"] is False
        finally:
            subprocess.run(["chattr", "-i", str(folder)], check=False)
        service.post("/etvr/config", json={"debug": True, "osc": {"mirror_eyes": True}})
        assert service.get("/etvr/health").json()["persisted"] is True


@pytest.mark.parametrize(
    "faults",
    [
        StreamFaults(corrupt_every=2, wrong_length_every=3, truncate_every=5),
        StreamFaults(stall_after_frames=20),
        StreamFaults(close_after_frames=10),
        StreamFaults(silent=True),
    ],
    ids=["garbage", "stall", "early-close", "silent"],
)
def test_a_misbehaving_camera_leaves_the_api_and_the_other_tracker_unaffected(
    tmp_path: Path, faults: StreamFaults
) -> None:
    with FakeOpenIrisHttpServer(make_jpegs(8), fps=0, faults=faults) as camera:  # fps 0: a flood
        with Service(tmp_path / "tracker-config.json") as service:
            service.post(
                "/etvr/config",
                json={
                    "trackers": [
                        {"name": "Bad", "tracker_position": "LEFT_EYE", "camera": {"capture_source": camera.url}},
                        {"name": "Good", "tracker_position": "RIGHT_EYE", "camera": {"capture_source": "virtual"}},
                    ]
                },
            )
            service.get("/etvr/start")

            def tracker(name: str) -> dict[str, object]:
                found: dict[str, object] = next(
                    t for t in service.get("/etvr/trackers/status").json() if t["name"] == name
                )
                return found

            assert wait_until(lambda: float(tracker("Good")["fps"]) > 40, 15.0)  # type: ignore[arg-type]
            latencies = []
            for _ in range(150):
                started = time.perf_counter()
                assert service.get("/etvr/trackers/status").status_code == 200
                latencies.append(time.perf_counter() - started)
            # An API held up by the camera would answer in seconds; the bounds leave room for a loaded CI host
            # (a p99 bound of 50 ms failed once on a 2-core machine that was also training a model).
            p50_ms, p99_ms = (float(v) * 1000 for v in np.percentile(latencies, [50, 99]))
            assert p50_ms < 50.0, f"API p50 {p50_ms:.1f} ms under a misbehaving camera"
            assert p99_ms < 250.0, f"API p99 {p99_ms:.1f} ms under a misbehaving camera"
            good = tracker("Good")
            assert float(good["fps"]) > 40, good  # type: ignore[arg-type]
            bad = tracker("Bad")
            processes = bad["processes"]
            assert isinstance(processes, dict)
            assert processes["camera"]["alive"] is True
            assert processes["tracker"]["restarts"] == 0 and processes["camera"]["restarts"] == 0
            if faults.corrupt_every:
                assert wait_until(lambda: tracker("Bad")["processes"]["camera"].get("frames_corrupt", 0) > 0, 5.0)  # type: ignore[index]
            json.dumps(bad)  # the status stays plain JSON whatever the camera did

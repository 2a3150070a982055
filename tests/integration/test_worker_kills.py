"""kill -9 of each kind of worker while tracking: back within a second, OSC resumes, nothing leaks."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import psutil
import pytest

from tests.support.service import Service, wait_until

KINDS = ("camera", "tracker", "osc")


def shm_segments(pid: int | None = None) -> set[str]:
    """Shared-memory segments that exist (or, with a pid, that this process maps): other programs on the
    machine may create their own at the same time, so leaks are judged on the service's own mappings."""
    if pid is None:
        return {name for name in os.listdir("/dev/shm") if name.startswith("psm_")}
    with open(f"/proc/{pid}/maps") as maps:
        return {line.rsplit("/", 1)[-1].split()[0] for line in maps if "/dev/shm/psm_" in line}


def drain(udp: socket.socket) -> None:
    udp.setblocking(False)
    try:
        while True:
            udp.recv(4096)
    except BlockingIOError:
        pass
    finally:
        udp.setblocking(True)


def osc_flows(udp: socket.socket, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    udp.settimeout(0.1)
    while time.monotonic() < deadline:
        try:
            if b"LeftEyeX" in udp.recv(4096):
                return True
        except TimeoutError:
            continue
    return False


def kill_workers_repeatedly(tmp_path: Path, rounds: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        with Service(tmp_path / "tracker-config.json") as service:
            service.post(
                "/etvr/config",
                json={
                    "osc": {"sending_port": udp.getsockname()[1]},
                    "trackers": [
                        {"name": "L", "tracker_position": "LEFT_EYE", "camera": {"capture_source": "virtual"}},
                        {"name": "R", "tracker_position": "RIGHT_EYE", "camera": {"capture_source": "virtual"}},
                    ],
                },
            )
            config_before = service.config_path.read_bytes()
            service.get("/etvr/start")
            assert osc_flows(udp, 15.0), "OSC never started"
            assert service.process is not None
            main = psutil.Process(service.process.pid)
            fds_before = main.num_fds()
            segments_running = shm_segments(main.pid)
            assert len(segments_running) == 6  # per tracker: a frame ring and two preview slots

            def left(kind: str) -> dict[str, object]:
                info: dict[str, object] = service.get("/etvr/trackers/status").json()[0]["processes"][kind]
                return info

            for round_index in range(rounds):
                kind = KINDS[round_index % len(KINDS)]
                victim = left(kind)
                os.kill(int(victim["pid"]), signal.SIGKILL)  # type: ignore[call-overload]
                killed = time.monotonic()
                assert wait_until(
                    lambda k=kind, old=victim["pid"]: left(k)["alive"] and left(k)["pid"] != old, 3.0, 0.02
                ), f"round {round_index}: {kind} not restarted"
                back_after = time.monotonic() - killed
                assert back_after < 1.5, f"round {round_index}: {kind} back after {back_after:.2f} s"
                # Back to work before the next kill (a worker killed again while starting is backed off
                # on purpose: that looks like a crash loop).
                assert wait_until(lambda k=kind: left(k).get("state") not in ("starting", "restarting"), 10.0)
                drain(udp)
                assert osc_flows(udp, 5.0), f"round {round_index}: OSC did not resume after killing {kind}"

            restarts = {kind: left(kind)["restarts"] for kind in KINDS}
            assert sum(restarts.values()) == rounds  # type: ignore[arg-type]
            assert service.config_path.read_bytes() == config_before, "the config is intact"
            assert shm_segments(main.pid) == segments_running, "no shared-memory segment leaked"
            assert main.num_fds() <= fds_before + 3, "no file descriptor leaked in the main process"
            service.get("/etvr/stop")
            assert wait_until(lambda: not (segments_running & shm_segments()), 3.0), "segments released on stop"


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals and /dev/shm")
def test_kill_9_of_each_worker_kind(tmp_path: Path) -> None:
    kill_workers_repeatedly(tmp_path, rounds=6)


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.skipif(os.name != "posix", reason="POSIX signals and /dev/shm")
def test_kill_9_of_workers_150_times(tmp_path: Path) -> None:
    kill_workers_repeatedly(tmp_path, rounds=150)

"""The single executable `dist/ETVR` as the desktop app uses it: started with no arguments, its stdout
read, stopped by a hard kill of its whole process group.

Slow (run explicitly with `-m slow`): the first run builds the executable with PyInstaller (about
1-2 min on 2 cores); later runs reuse `dist/ETVR` while it is newer than every source file.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import psutil
import pytest
from pythonosc.osc_message import OscMessage

from app import __version__
from app.api.app import demo_config
from app.camera.virtual_eye import VirtualEyeSource
from app.config.models import EtvrConfig
from tests.support.service import REPO_ROOT, free_port

# Slow, yet part of the default run and CI (the `ci` marker): one build per run, reused when up to date.
pytestmark = [pytest.mark.slow, pytest.mark.ci, pytest.mark.timeout(900)]

EXE = REPO_ROOT / "dist" / ("ETVR.exe" if os.name == "nt" else "ETVR")
BUILD_INPUTS = [REPO_ROOT / "TrackingBackend", REPO_ROOT / "bundle", REPO_ROOT / "ETVR.spec", REPO_ROOT / "poetry.lock"]
BUILD_TIMEOUT_S = 900.0
START_TIMEOUT_S = 30.0
OSC_TIMEOUT_S = 15.0
OSC_COLLECT_S = 2.0
GONE_TIMEOUT_S = 5.0
ORPHAN_STOP_TIMEOUT_S = 15.0  # a graceful stop: workers get 2 s each to join
RUN_MARKER = "ETVR_TEST_RUN"
ANALYZE_FRAMES = 30


def _newest_input_mtime() -> float:
    newest = 0.0
    for root in BUILD_INPUTS:
        paths = root.rglob("*") if root.is_dir() else [root]
        for path in paths:
            if path.is_file() and "__pycache__" not in path.parts:
                newest = max(newest, path.stat().st_mtime)
    return newest


@pytest.fixture(scope="module")
def executable() -> Path:
    """`dist/ETVR`, built like `python build.py build` unless it is newer than every source file."""
    if importlib.util.find_spec("PyInstaller") is None:
        pytest.skip("PyInstaller is not installed (dev group; `python build.py build` installs it): no executable")
    if EXE.is_file() and EXE.stat().st_mtime > _newest_input_mtime():
        return EXE
    log_path = REPO_ROOT / "build" / "pyinstaller.log"
    log_path.parent.mkdir(exist_ok=True)
    with log_path.open("wb") as log:
        code = subprocess.call(
            [sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean", "ETVR.spec"],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=BUILD_TIMEOUT_S,
        )
    assert code == 0, f"PyInstaller failed ({code}):\n{log_path.read_text(errors='replace')[-4000:]}"
    assert EXE.is_file()
    return EXE


class Launch:
    """One run of the executable in its own session (process group), as the desktop app starts it."""

    def __init__(self, exe: Path, folder: Path, args: list[str], env: dict[str, str], port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{self.port}"
        self.marker = uuid.uuid4().hex
        self.unpack_dir = folder / "unpack"
        self.unpack_dir.mkdir(exist_ok=True)
        self.log_path = folder / f"etvr-{self.port}.log"
        full_env = dict(os.environ, **env)
        full_env.update(
            ETVR_LOG_DIR=str(folder / "logs"),
            ETVR_DATA_DIR=str(folder / "data"),
            # The one-file bootloader unpacks into the temp dir: a private one, to count what is left there.
            TMPDIR=str(self.unpack_dir),
            TEMP=str(self.unpack_dir),
            TMP=str(self.unpack_dir),
            **{RUN_MARKER: self.marker},
        )
        self.started_at = time.monotonic()
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(exe), *args], stdout=subprocess.PIPE, stderr=log, env=full_env, start_new_session=True
            )
        self.stdout_lines: list[str] = []
        self._stdout_reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._stdout_reader.start()
        self.client = httpx.Client(base_url=self.url, timeout=10.0)

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.stdout_lines.append(line.decode(errors="replace").rstrip())

    def first_stdout_line(self, timeout_s: float = 5.0) -> str:
        deadline = time.monotonic() + timeout_s
        while not self.stdout_lines and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.stdout_lines, f"nothing on stdout within {timeout_s} s"
        return self.stdout_lines[0]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def wait_ready(self) -> float:
        """Seconds from launch to the first successful `/etvr/status`."""
        deadline = self.started_at + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"ETVR exited with {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if self.client.get("/etvr/status").status_code == 200:
                    return time.monotonic() - self.started_at
            time.sleep(0.02)
        pytest.fail(f"ETVR did not answer within {START_TIMEOUT_S} s:\n{self.log()}")

    def ours(self) -> list[psutil.Process]:
        """Every live process of this launch, found by the marker in its environment (escapees too)."""
        found = []
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if process.status() != psutil.STATUS_ZOMBIE and process.environ().get(RUN_MARKER) == self.marker:
                    found.append(process)
        return found

    def hard_kill(self) -> None:
        """What the desktop app does on exit: SIGKILL to the whole process group (a tree kill on Windows)."""
        if os.name == "nt":
            subprocess.call(["taskkill", "/F", "/T", "/PID", str(self.process.pid)], stdout=subprocess.DEVNULL)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(GONE_TIMEOUT_S)
        self.close()

    def close(self) -> None:
        self.client.close()
        # EOF once every process that inherited stdout is gone.
        self._stdout_reader.join(GONE_TIMEOUT_S)
        if not self._stdout_reader.is_alive():
            assert self.process.stdout is not None
            self.process.stdout.close()


@contextlib.contextmanager
def launched(exe: Path, folder: Path, args: list[str], env: dict[str, str], port: int) -> Iterator[Launch]:
    launch = Launch(exe, folder, args, env, port)
    try:
        yield launch
    finally:
        if launch.process.poll() is None:
            launch.hard_kill()
        for process in launch.ours():  # only after a failure: the test asserts there are none
            with contextlib.suppress(psutil.Error):
                process.kill()
        launch.close()


@contextlib.contextmanager
def osc_socket() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(0.2)
        yield udp


def receive_osc(udp: socket.socket) -> dict[str, list[float]]:
    """OSC values by address: everything that arrives within OSC_COLLECT_S of the first datagram."""
    values: dict[str, list[float]] = {}
    deadline = time.monotonic() + OSC_TIMEOUT_S
    first_at: float | None = None
    while time.monotonic() < deadline and (first_at is None or time.monotonic() - first_at < OSC_COLLECT_S):
        try:
            datagram = udp.recv(4096)
        except TimeoutError:
            continue
        first_at = first_at or time.monotonic()
        message = OscMessage(datagram)
        values.setdefault(message.address, []).extend(float(p) for p in message.params)
    return values


def assert_eye_osc(values: dict[str, list[float]]) -> None:
    assert values, f"no OSC datagram within {OSC_TIMEOUT_S} s"
    for address, low, high in (
        ("/avatar/parameters/LeftEyeX", -1.0, 1.0),
        ("/avatar/parameters/RightEyeX", -1.0, 1.0),
        ("/avatar/parameters/EyesY", -1.0, 1.0),
        ("/avatar/parameters/LeftEyeLidExpandedSqueeze", 0.0, 1.0),
    ):
        received = values.get(address, [])
        assert len(received) > 20, f"{address}: {len(received)} values in {OSC_COLLECT_S} s; got {sorted(values)}"
        assert all(low <= v <= high for v in received), f"{address} out of [{low}, {high}]: {received[:10]}"
    # The virtual eye looks around: a frozen pipeline that sends a constant would not.
    assert max(values["/avatar/parameters/LeftEyeX"]) - min(values["/avatar/parameters/LeftEyeX"]) > 0.05


def assert_workers_are_spawned_children(launch: Launch, expected_workers: int) -> None:
    """Each worker is the executable re-run by multiprocessing (spawn), none a second server."""
    bootloader = psutil.Process(launch.process.pid)
    services = bootloader.children()
    assert len(services) == 1, f"one service process under the bootloader, got {services}"
    service = services[0]
    helpers = service.children(recursive=True)
    for helper in helpers:
        cmdline = helper.cmdline()
        assert Path(cmdline[0]).resolve() == EXE.resolve(), cmdline
        assert "--multiprocessing-fork" in cmdline or "-c" in cmdline, f"not a multiprocessing child: {cmdline}"
    forked = [h for h in helpers if "--multiprocessing-fork" in h.cmdline()]
    assert len(forked) == expected_workers + 1, f"{expected_workers} workers and the manager expected: {helpers}"
    assert sum(1 for line in launch.stdout_lines if "listening on" in line) == 1


def assert_all_gone(launch: Launch, timeout_s: float = GONE_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while (left := launch.ours()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"processes outlived the hard kill: {[p.cmdline() for p in left]}"


def unpack_dirs(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("_MEI*")}


def write_config(path: Path, config: EtvrConfig) -> None:
    path.write_text(config.model_dump_json(indent=2))


def test_cli_help_and_version(executable: Path) -> None:
    version = subprocess.run([str(executable), "--version"], capture_output=True, text=True, timeout=60, check=True)
    assert version.stdout.strip() == f"ETVR {__version__}"
    usage = subprocess.run([str(executable), "--help"], capture_output=True, text=True, timeout=60, check=True)
    for option in ("--host", "--port", "--config", "--demo", "ETVR_PORT", "ETVR_HOST", "ETVR_CONFIG"):
        assert option in usage.stdout


def test_analyze_a_video(executable: Path, tmp_path: Path) -> None:
    """`ETVR analyze`: the pipeline offline, reading a video through the bundled OpenCV/FFmpeg."""
    video = tmp_path / "eye.avi"
    source = VirtualEyeSource(paced=False)
    source.open()
    frames = [frame.gray for frame in (source.read(1.0) for _ in range(ANALYZE_FRAMES)) if frame is not None]
    height, width = frames[0].shape
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 30.0, (width, height), False)
    for gray in frames:
        writer.write(gray)
    writer.release()
    csv_path = tmp_path / "eye.csv"
    result = subprocess.run(
        [str(executable), "analyze", str(video), "--csv", str(csv_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with csv_path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == ANALYZE_FRAMES
    assert sum(1 for row in rows if row["pupil_x"]) > ANALYZE_FRAMES // 2


def test_started_like_the_desktop_app_then_hard_killed(
    executable: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No arguments (config and port from the environment), the desktop app's start-up calls, OSC from
    the virtual eye; then `--demo` with the config in the per-OS user config dir. Each run ends with a
    hard kill of the process group, and no process may be left."""
    with osc_socket() as udp:
        osc_port = udp.getsockname()[1]
        config_path = tmp_path / "tracker-config.json"
        config = EtvrConfig()
        config.osc.sending_port = osc_port
        write_config(config_path, config)

        port = free_port()
        env = {"ETVR_CONFIG": str(config_path), "ETVR_PORT": str(port)}
        with launched(executable, tmp_path, [], env, port) as launch:
            ready_s = launch.wait_ready()
            assert launch.first_stdout_line() == f"ETVR Backend {__version__} listening on {launch.url}"
            assert launch.client.get("/etvr/status").json() is False
            docs = launch.client.get("/docs")
            assert docs.status_code == 200 and "swagger" in docs.text.lower()
            assert "/etvr/status" in launch.client.get("/openapi.json").json()["paths"]
            # Discovery loads zeroconf's compiled modules and pyserial's port listing from the bundle.
            cameras = launch.client.get("/etvr/cameras", params={"mdns_timeout_s": 0.5})
            assert cameras.status_code == 200 and isinstance(cameras.json(), list)
            if (REPO_ROOT / "TrackingBackend" / "assets" / "index.html").is_file():
                assert launch.client.get("/").status_code == 200, "dashboard assets missing from the bundle"

            devices = [
                {"position": "left_eye", "capture_source": "virtual"},
                {"position": "right_eye", "capture_source": "virtual"},
            ]
            assert launch.client.post("/etvr/config/tracker", json={"devices": devices}).status_code == 200
            assert launch.client.get("/etvr/start").json() is True
            assert_eye_osc(receive_osc(udp))
            assert launch.client.get("/etvr/status").json() is True
            assert_workers_are_spawned_children(launch, expected_workers=6)
            first_unpack = unpack_dirs(launch.unpack_dir)
            assert len(first_unpack) == 1
            launch.hard_kill()
            assert_all_gone(launch)
            # SIGKILL leaves the bootloader no chance to remove its unpack dir: the next launch does.
            assert unpack_dirs(launch.unpack_dir) == first_unpack

        demo = demo_config()
        demo.osc.sending_port = osc_port
        port = free_port()
        args = ["--demo", "--host", "127.0.0.1", "--port", str(port)]
        if sys.platform.startswith("linux"):
            # The per-OS user config dir, moved by XDG_CONFIG_HOME so that the real one is never touched.
            env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
            demo_path = tmp_path / "xdg" / "ETVR" / "demo-config.json"
            demo_path.parent.mkdir(parents=True)
        else:
            env = {}
            demo_path = tmp_path / "demo-config.json"
            args += ["--config", str(demo_path)]
        write_config(demo_path, demo)
        while True:  # drop what the first run sent before it was killed
            try:
                udp.recv(4096)
            except TimeoutError:
                break
        with launched(executable, tmp_path, args, env, port) as demo_launch:
            demo_ready_s = demo_launch.wait_ready()
            assert_eye_osc(receive_osc(udp))
            assert demo_launch.client.get("/etvr/status").json() is True
            assert_workers_are_spawned_children(demo_launch, expected_workers=6)
            assert first_unpack.isdisjoint(unpack_dirs(demo_launch.unpack_dir)), "stale unpack dir not removed"
            demo_launch.hard_kill()
            assert_all_gone(demo_launch)
        shutil.rmtree(demo_launch.unpack_dir, ignore_errors=True)  # about 250 MB

    size_mb = executable.stat().st_size / 1e6
    with capsys.disabled():
        print(
            f"\nETVR executable {size_mb:.1f} MB; first /etvr/status {ready_s:.2f} s after launch "
            f"(demo {demo_ready_s:.2f} s)"
        )


@pytest.mark.skipif(os.name == "nt", reason="on Windows the bootloader's job object ends the service with it")
def test_service_stops_when_only_the_bootloader_is_killed(executable: Path, tmp_path: Path) -> None:
    """Regression: a kill of the one-file bootloader's pid alone (not its group) left the service and its
    workers running as orphans on Linux, holding the port. The runtime hook now stops them gracefully."""
    port = free_port()
    env = {"ETVR_CONFIG": str(tmp_path / "demo-config.json"), "ETVR_PORT": str(port)}
    with launched(executable, tmp_path, ["--demo"], env, port) as launch:
        launch.wait_ready()
        assert launch.client.get("/etvr/status").json() is True
        assert len(launch.ours()) > 4, "the demo's workers should be running"
        os.kill(launch.process.pid, signal.SIGKILL)
        launch.process.wait(GONE_TIMEOUT_S)
        assert_all_gone(launch, timeout_s=ORPHAN_STOP_TIMEOUT_S)

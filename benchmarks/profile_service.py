"""Profile the running service across all its processes with py-spy.

`python build.py profile [--seconds N] [--rate HZ] [--format speedscope|flamegraph] [--idle] [--waits] [--blocking]
[--gil] [--out DIR]`

Starts the service in demo mode (two virtual-eye trackers, tracking at once) on a free port with its own
config in a temporary folder and its OSC going to a local UDP sink, waits until both eyes are tracked,
then records N seconds with `py-spy record --subprocesses` (the main process, the manager and every
camera, tracker and OSC worker) while a client polls the status route, as a GUI showing the trackers would. Writes
`bench-results/profile-<time>.speedscope.json` (open it at https://www.speedscope.app, or
`--format flamegraph` for an SVG) with every profile renamed to say which worker it is, and a text
summary next to it: CPU samples per process and the top functions by own time.
py-spy needs ptrace rights on the service: root, `kernel.yama.ptrace_scope=0`, or CAP_SYS_PTRACE. By
default it samples without pausing the processes (`--nonblocking`), so the pipeline keeps its timing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
from tests.support.service import REPO_ROOT, Service, wait_until

READY_TIMEOUT_S = 40.0
TOP_FUNCTIONS = 12

CLIENT_POLL_S = 0.5


def py_spy_path() -> str | None:
    """py-spy next to this interpreter (the project's .venv), else on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def process_roles(service: Service) -> dict[int, str]:
    """pid -> role (`main`, `LEFT_EYE camera`, `manager`, ...) for the service's process tree."""
    assert service.process is not None
    roles = {service.process.pid: "main (API, supervisor)"}
    for tracker in service.get("/etvr/trackers/status").json():
        for kind, info in tracker["processes"].items():
            if info.get("pid"):
                roles[int(info["pid"])] = f"{tracker['tracker_position']} {kind}"
    for child in service.descendants():
        if child.pid not in roles:
            try:
                command = " ".join(child.cmdline())
            except Exception:
                command = ""
            roles[child.pid] = "resource tracker" if "resource_tracker" in command else "manager (status dict)"
    return roles


def _pid_of(profile_name: str) -> int | None:
    parts = profile_name.split()
    if len(parts) >= 2 and parts[0] == "Process" and parts[1].isdigit():
        return int(parts[1])
    return None


# Leaf frames of a thread that waits: py-spy cannot always tell a blocked thread from a running one.
WAITING_LEAVES = (
    "wait",
    "_check_inotify_fd",
    "select",
    "Connection._recv",
    "Connection._poll",
    "accept",
    "sleep",
    "join",
)


def _is_waiting(frame_name: str) -> bool:
    bare = frame_name.rsplit(".", 1)[-1]
    return frame_name in WAITING_LEAVES or bare in WAITING_LEAVES or bare in ("poll", "recv_into", "acquire")


def summarise_speedscope(path: Path, roles: dict[int, str], cpu_pct: dict[int, float], seconds: float) -> str:
    """Rename the profiles after their roles (in place) and return a text summary per process."""
    data: dict[str, Any] = json.loads(path.read_text())
    frames = data["shared"]["frames"]
    busy_by_role: Counter[str] = Counter()
    own_by_role: dict[str, Counter[str]] = defaultdict(Counter)
    for profile in data["profiles"]:
        pid = _pid_of(profile["name"])
        role = roles.get(pid, "other") if pid is not None else "other"
        profile["name"] = f"[{role}] {profile['name']}"
        weights = profile.get("weights") or [1.0] * len(profile["samples"])
        for stack, weight_s in zip(profile["samples"], weights, strict=False):
            if not stack or _is_waiting(frames[stack[-1]]["name"]):
                continue
            frame = frames[stack[-1]]
            where = f"{frame['name']} ({Path(frame.get('file', '?')).name}:{frame.get('line', '?')})"
            busy_by_role[role] += weight_s
            own_by_role[role][where] += weight_s
    path.write_text(json.dumps(data))
    pid_of_role = {role: pid for pid, role in roles.items()}
    lines = [
        "per process: CPU % of one core (psutil, exact) and the functions that own the busy samples "
        "(py-spy; waits left out)"
    ]
    for role in sorted(pid_of_role, key=lambda r: -cpu_pct.get(pid_of_role[r], 0.0)):
        busy_s = busy_by_role.get(role, 0.0)
        cpu = cpu_pct.get(pid_of_role[role], float("nan"))
        lines.append(f"\n{role}: CPU {cpu:.1f} %, busy samples {busy_s:.2f} s of {seconds:g} s")
        for where, own_s in own_by_role[role].most_common(TOP_FUNCTIONS):
            lines.append(f"  {100.0 * own_s / busy_s:5.1f} %  {where}")
    return "\n".join(lines)


def _cpu_seconds(pids: list[int]) -> dict[int, float]:
    times = {}
    for pid in pids:
        try:
            cpu = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        times[pid] = cpu.user + cpu.system
    return times


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="profile", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="recording length (default 10)")
    parser.add_argument("--rate", type=int, default=200, help="samples per second per process (default 200)")
    parser.add_argument("--format", choices=("speedscope", "flamegraph"), default="speedscope")
    parser.add_argument("--idle", action="store_true", help="profile with the trackers stopped")
    parser.add_argument("--blocking", action="store_true", help="pause the processes while sampling (exact stacks)")
    parser.add_argument("--native", action="store_true", help="include native (C/C++) frames, e.g. inside OpenCV")
    parser.add_argument(
        "--waits",
        action="store_true",
        help="keep the samples of waiting threads too (py-spy --idle): every process shows",
    )
    parser.add_argument(
        "--gil",
        action="store_true",
        help="only samples holding the GIL: waits never count as work (without --blocking py-spy can take a "
        "waiting thread for a running one), but OpenCV calls that release the GIL are missed too",
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench-results", help="report folder")
    args = parser.parse_args(argv)

    py_spy = py_spy_path()
    if py_spy is None:
        print("py-spy is not installed: `python build.py test` installs the dev tools into .venv", file=sys.stderr)
        return 2
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "speedscope.json" if args.format == "speedscope" else "svg"
    report_path = args.out / f"profile-{stamp}.{suffix}"
    summary_path = args.out / f"profile-{stamp}.txt"

    with (
        tempfile.TemporaryDirectory(prefix="etvr-profile-") as workdir,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink,
    ):
        sink.bind(("127.0.0.1", 0))
        service = Service(Path(workdir) / "demo-config.json", args=["--demo"])
        service.start(READY_TIMEOUT_S)
        try:
            service.post("/etvr/config", json={"osc": {"sending_port": sink.getsockname()[1]}})

            def tracking() -> bool:
                status = service.get("/etvr/trackers/status").json()
                running = [t for t in status if t["running"]]
                return bool(running) and all((t["processes"]["tracker"].get("fps") or 0) > 0 for t in running)

            if not wait_until(tracking, READY_TIMEOUT_S, 0.2):
                print(f"the demo trackers did not start:\n{service.log()}", file=sys.stderr)
                return 1
            if args.idle:
                service.get("/etvr/stop")
                time.sleep(1.0)
            roles = process_roles(service)
            assert service.process is not None
            command = [py_spy, "record", "--pid", str(service.process.pid), "--subprocesses"]
            command += ["--duration", str(max(1, round(args.seconds))), "--rate", str(args.rate)]
            command += ["--format", args.format, "--output", str(report_path)]
            if not args.blocking:
                command.append("--nonblocking")
            if args.native:
                command.append("--native")
            if args.waits:
                command.append("--idle")
            if args.gil:
                command.append("--gil")
            print("+ " + " ".join(command), flush=True)
            cpu_before, started = _cpu_seconds(list(roles)), time.monotonic()
            # While it records, a client asks for the trackers' status twice a second, as a GUI would,
            # so the main process is profiled serving its API rather than only waiting.
            with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as recorder:
                deadline = started + args.seconds + 60
                while recorder.poll() is None and time.monotonic() < deadline:
                    service.get("/etvr/trackers/status")
                    time.sleep(CLIENT_POLL_S)
                out, err = recorder.communicate(timeout=max(1.0, deadline - time.monotonic()))
            finished = subprocess.CompletedProcess(command, recorder.returncode, out, err)
            cpu_after, elapsed_s = _cpu_seconds(list(roles)), time.monotonic() - started
            cpu_pct = {
                pid: 100.0 * (cpu_after[pid] - cpu_before[pid]) / elapsed_s for pid in cpu_after if pid in cpu_before
            }
            if finished.returncode != 0 or not report_path.exists():
                print(finished.stdout + finished.stderr, file=sys.stderr)
                print(
                    "py-spy failed; it needs ptrace rights on the service (root, CAP_SYS_PTRACE, or "
                    "`sudo sysctl kernel.yama.ptrace_scope=0`)",
                    file=sys.stderr,
                )
                return 1
        finally:
            service.stop()

    lines = [f"ETVR service profile, {args.seconds:g} s, {'idle' if args.idle else 'demo: two virtual-eye trackers'}"]
    lines.append("processes: " + ", ".join(f"{pid} = {role}" for pid, role in sorted(roles.items())))
    if args.format == "speedscope":
        lines.append(summarise_speedscope(report_path, roles, cpu_pct, args.seconds))
    lines.append(f"\ntotal CPU {sum(cpu_pct.values()):.1f} % of one core (while py-spy sampled, which costs a little)")
    summary_path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nprofile: {report_path}")
    print(f"summary: {summary_path}")
    if args.format == "speedscope":
        print("open the profile at https://www.speedscope.app (or `speedscope <file>`)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

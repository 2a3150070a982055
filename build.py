#!/usr/bin/env python3
"""One entry point for developers, CI and users: `python build.py <command>`.

Standard library only. Before any command it bootstraps Poetry (into `.tools/poetry` when no Poetry is
on PATH) and installs the locked environment (`poetry.lock`) into the in-project `.venv`; the install is
skipped while the lock and the chosen groups are unchanged.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
TOOLS_DIR = ROOT / ".tools"
POETRY_HOME = TOOLS_DIR / "poetry"
POETRY_SPEC = "poetry>=2.1,<3"
POETRY_SHIM = ROOT / "tools" / "poetry_shim.py"
VENV_DIR = ROOT / ".venv"
INSTALL_STAMP = VENV_DIR / ".etvr-install-stamp"
BACKEND_DIR = ROOT / "TrackingBackend"
IS_WINDOWS = os.name == "nt"

COMMANDS_HELP = """\
usage: python build.py <command> [args...]

commands:
  help                 this text
  run [args]           start the service in demo mode (virtual-eye trackers, no hardware needed);
                       extra args go to TrackingBackend/main.py (e.g. --port 8001)
  dev [args]           run the service with code reload, for development
  test [pytest args]   install what the tests need and run the whole suite
  lint                 ruff check, ruff format --check, mypy
  build [--sidecar DIR]
                       build the single executable dist/ETVR with PyInstaller; --sidecar also copies
                       it to DIR/ETVR-<rust target triple> for the desktop app (Tauri)
  bench <name> [args]  run a benchmark and print its figures; `bench list` lists them
  profile [args]       profile the running service across all its processes
"""


def _bin(env_dir: Path, name: str) -> Path:
    sub = "Scripts" if IS_WINDOWS else "bin"
    suffix = ".exe" if IS_WINDOWS else ""
    return env_dir / sub / f"{name}{suffix}"


def venv_python() -> Path:
    return _bin(VENV_DIR, "python")


def _run(cmd: list[str | Path], env: dict[str, str] | None = None, cwd: Path = ROOT) -> int:
    printable = " ".join(str(part) for part in cmd)
    print(f"+ {printable}", flush=True)
    return subprocess.call([str(part) for part in cmd], env=env, cwd=cwd)


def _check(cmd: list[str | Path], env: dict[str, str] | None = None) -> None:
    code = _run(cmd, env=env)
    if code != 0:
        raise SystemExit(code)


def _python_of_script(script: str) -> str | None:
    """The interpreter that runs an installed console script (its shebang), if readable."""
    try:
        first_line = Path(script).read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return None
    if first_line.startswith("#!") and "python" in first_line:
        candidate = first_line[2:].strip().split()[0]
        if Path(candidate).exists():
            return candidate
    return None


def poetry_python() -> str:
    """A Python that can import poetry: an existing install on PATH, else our bootstrapped one."""
    existing = shutil.which("poetry")
    if existing and not IS_WINDOWS:
        python = _python_of_script(existing)
        if python and subprocess.call([python, "-c", "import poetry.console"], stderr=subprocess.DEVNULL) == 0:
            return python
    own_python = _bin(POETRY_HOME, "python")
    if not own_python.exists() or subprocess.call(
        [str(own_python), "-c", "import poetry.console"], stderr=subprocess.DEVNULL
    ):
        print(f"Bootstrapping Poetry into {POETRY_HOME} ...", flush=True)
        shutil.rmtree(POETRY_HOME, ignore_errors=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(POETRY_HOME)
        _check([own_python, "-m", "pip", "install", "--quiet", POETRY_SPEC])
    return str(own_python)


def poetry(*args: str) -> None:
    env = dict(os.environ, POETRY_VIRTUALENVS_IN_PROJECT="true")
    _check([poetry_python(), POETRY_SHIM, *args], env=env)


def ensure_environment(groups: tuple[str, ...] = ("dev",)) -> None:
    """Install the locked environment into .venv unless it is already installed as locked."""
    digest = hashlib.sha256()
    for name in ("poetry.lock", "pyproject.toml"):
        digest.update((ROOT / name).read_bytes())
    digest.update(",".join(groups).encode())
    digest.update(sys.version.encode())
    stamp = digest.hexdigest()
    if venv_python().exists() and INSTALL_STAMP.exists() and INSTALL_STAMP.read_text() == stamp:
        return
    with_groups = [f"--with={','.join(groups)}"] if groups else []
    # `install`, not `sync`: tools a developer added by hand (e.g. reference detectors) stay.
    poetry("install", "--no-root", "--no-interaction", *with_groups)
    INSTALL_STAMP.write_text(stamp)


def _backend_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BACKEND_DIR), str(ROOT), env.get("PYTHONPATH")]))
    return env


def cmd_run(args: list[str]) -> int:
    ensure_environment(groups=())
    return _run([venv_python(), BACKEND_DIR / "main.py", "--demo", *args], env=_backend_env())


def cmd_dev(args: list[str]) -> int:
    ensure_environment()
    env = _backend_env()
    env.setdefault("ETVR_DEMO", "1")
    uvicorn_args = ["--factory", "main:setup_app", "--reload", "--app-dir", str(BACKEND_DIR)]
    uvicorn_args += ["--reload-dir", str(BACKEND_DIR)]
    return _run([venv_python(), "-m", "uvicorn", *uvicorn_args, *args], env=env)


def ensure_chromium() -> None:
    """The browser tests drive Debian's Chromium; install it where we can (root with apt), else they skip."""
    if Path("/usr/bin/chromium").exists() or shutil.which("apt-get") is None:
        return
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        print("note: /usr/bin/chromium is missing (apt-get install chromium); the browser tests will skip")
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if _run(["apt-get", "update", "-qq"], env=env) == 0:
        _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"], env=env)


def cmd_test(args: list[str]) -> int:
    ensure_environment()
    ensure_chromium()
    return _run([venv_python(), "-m", "pytest", *args], env=_backend_env())


def cmd_lint(args: list[str]) -> int:
    ensure_environment()
    python = venv_python()
    failures = 0
    failures += _run([python, "-m", "ruff", "check", "."]) != 0
    failures += _run([python, "-m", "ruff", "format", "--check", "."]) != 0
    failures += _run([python, "-m", "mypy", *args], env=_backend_env()) != 0
    return 1 if failures else 0


def rust_target_triple() -> str:
    """The Rust host triple that names a Tauri sidecar (`ETVR-<triple>`): `rustc -vV`'s `host:`, else guessed."""
    rustc = shutil.which("rustc")
    if rustc:
        output = subprocess.run([rustc, "-vV"], capture_output=True, text=True, check=False).stdout
        for line in output.splitlines():
            if line.startswith("host:"):
                return line.split(":", 1)[1].strip()
    machine = platform.machine().lower()
    arch = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64", "i386": "i686", "x86": "i686"}.get(machine, machine)
    if IS_WINDOWS:
        return f"{arch}-pc-windows-msvc"
    if sys.platform == "darwin":
        return f"{arch}-apple-darwin"
    if arch.startswith("armv7"):
        return "armv7-unknown-linux-gnueabihf"
    return f"{arch}-unknown-linux-gnu"


def cmd_build(args: list[str]) -> int:
    """`build [--sidecar DIR]`: dist/ETVR, and with --sidecar a copy named as the desktop app expects."""
    sidecar_dir: Path | None = None
    if "--sidecar" in args:
        at = args.index("--sidecar")
        if at + 1 >= len(args):
            print("--sidecar needs a folder (the desktop app's `bin`)", file=sys.stderr)
            return 2
        sidecar_dir = Path(args[at + 1])
        args = args[:at] + args[at + 2 :]
    ensure_environment()
    code = _run([venv_python(), "-m", "PyInstaller", "--noconfirm", "--clean", "ETVR.spec", *args])
    if code == 0:
        suffix = ".exe" if IS_WINDOWS else ""
        exe = ROOT / "dist" / f"ETVR{suffix}"
        print(f"built {exe} ({exe.stat().st_size / 1e6:.1f} MB)")
        if sidecar_dir is not None:
            sidecar_dir.mkdir(parents=True, exist_ok=True)
            sidecar = sidecar_dir / f"ETVR-{rust_target_triple()}{suffix}"
            shutil.copy2(exe, sidecar)
            print(f"sidecar {sidecar}")
    return code


def cmd_bench(args: list[str]) -> int:
    ensure_environment()
    return _run([venv_python(), "-m", "benchmarks", *args], env=_backend_env())


def cmd_profile(args: list[str]) -> int:
    ensure_environment()
    return _run([venv_python(), "-m", "benchmarks.profile_service", *args], env=_backend_env())


COMMANDS = {
    "run": cmd_run,
    "dev": cmd_dev,
    "test": cmd_test,
    "lint": cmd_lint,
    "build": cmd_build,
    "bench": cmd_bench,
    "profile": cmd_profile,
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("help", "-h", "--help"):
        print(COMMANDS_HELP)
        return 0
    command = COMMANDS.get(argv[0])
    if command is None:
        print(f"unknown command {argv[0]!r}\n\n{COMMANDS_HELP}", file=sys.stderr)
        return 2
    return command(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""ETVR Backend entry point: the app factory `setup_app` and the command line.

`uvicorn --factory main:setup_app` (from this folder) serves the app with the config named by
`ETVR_CONFIG` (default: the per-OS user config dir) and demo mode when `ETVR_DEMO=1`.
Top-level imports stay light: every worker process (spawn) imports this module again.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import socket

    from fastapi import FastAPI

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def setup_app(config_path: Path | None = None, demo: bool | None = None) -> FastAPI:
    """The ASGI app (uvicorn's `--factory main:setup_app`)."""
    from app.api.app import create_app
    from app.paths import default_config_path, log_dir
    from app.runtime.logs import setup_main_logging

    # Under uvicorn (and `build.py dev`) the service's own log lines and the workers' need this too.
    setup_main_logging(log_dir())
    demo = _env_flag("ETVR_DEMO") if demo is None else demo
    return create_app(config_path or default_config_path(demo), demo=demo)


def build_parser() -> argparse.ArgumentParser:
    from app import __version__

    parser = argparse.ArgumentParser(
        prog="ETVR",
        description="ETVR Backend: eye tracking for VR headsets with DIY near-IR eye cameras. "
        "Also: `ETVR analyze <video|folder> --csv OUT` runs the tracking pipeline offline.",
    )
    # Environment defaults let a launcher that passes no arguments (the desktop app, tests) choose them.
    parser.add_argument(
        "--host",
        default=os.environ.get("ETVR_HOST", DEFAULT_HOST),
        help=f"address to listen on (default: ETVR_HOST, else {DEFAULT_HOST})",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=os.environ.get("ETVR_PORT", DEFAULT_PORT),
        help=f"port to listen on (default: ETVR_PORT, else {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="config file (default: ETVR_CONFIG, else tracker-config.json in the user config dir)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="use a separate demo config whose two trackers read the built-in virtual eye, and start tracking at once",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("ETVR_TOKEN"),
        help="require this token on every request (Authorization: Bearer, or ?token=); needed to "
        "listen on anything but loopback (default: ETVR_TOKEN)",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a further browser origin allowed by CORS (repeatable); the desktop app's and "
        "local origins are always allowed",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def main(argv: list[str]) -> int:
    if argv and argv[0] == "analyze":
        from app.analyze import main as analyze_main

        return analyze_main(argv[1:])
    args = build_parser().parse_args(argv)
    if not 0 < args.port < 65536:
        print(f"--port must be 1-65535, got {args.port}", file=sys.stderr)
        return 2

    from app.api.security import is_loopback_host

    if not is_loopback_host(args.host) and not args.token:
        print(f"refusing to listen on {args.host} without a token: pass --token or set ETVR_TOKEN", file=sys.stderr)
        return 2

    import uvicorn

    from app import __version__
    from app.api.app import create_app
    from app.paths import default_config_path, log_dir
    from app.runtime.logs import setup_main_logging

    setup_main_logging(log_dir(), debug=args.log_level == "debug")
    config_path = args.config or default_config_path(args.demo)
    server: uvicorn.Server | None = None

    def request_exit() -> None:
        if server is not None:
            server.should_exit = True

    app = create_app(
        config_path.resolve(),
        demo=args.demo,
        request_exit=request_exit,
        token=args.token,
        extra_cors_origins=args.allow_origin,
    )

    class _AnnouncingServer(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                # The desktop app reads stdout: one line once the port accepts connections.
                print(f"ETVR Backend {__version__} listening on {_url(args.host, args.port)}", flush=True)

    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        log_level=args.log_level,
        timeout_graceful_shutdown=3,
    )
    server = _AnnouncingServer(config)
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main(sys.argv[1:]))

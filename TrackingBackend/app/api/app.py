"""The FastAPI application: lifespan (config store, supervisor, file watcher), middleware, routers."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from app import __version__
from app.api.context import ServiceContext
from app.api.routes import cameras as camera_routes
from app.api.routes import config as config_routes
from app.api.routes import control as control_routes
from app.api.routes import dashboard as dashboard_routes
from app.api.routes import feeds as feed_routes
from app.api.routes import live as live_routes
from app.api.routes import trackers as tracker_routes
from app.api.security import TokenAuth
from app.config.models import EtvrConfig
from app.config.store import ConfigStore
from app.config.watcher import ConfigWatcher
from app.osc import api as osc_routes
from app.osc.service import OscService
from app.runtime.supervisor import Supervisor

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1_000_000
# The desktop app's origins and the backend's own pages (any local port).
DEFAULT_CORS_ORIGIN_REGEX = r"^(tauri://localhost|https?://tauri\.localhost|https?://(localhost|127\.0\.0\.1)(:\d+)?)$"


class BodySizeLimit:
    """Refuses request bodies over MAX_BODY_BYTES with a 413, whether or not Content-Length is sent."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._refuse(send)
                return
        received = 0

        async def limited_receive() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLargeError
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLargeError:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        response = JSONResponse({"detail": f"request body larger than {self.max_bytes} bytes"}, status_code=413)
        await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})


class _TooLargeError(Exception):
    pass


def demo_config() -> EtvrConfig:
    """Two trackers on the built-in virtual eye: the demo needs no hardware."""
    config = EtvrConfig()
    for tracker in config.trackers:
        if tracker.enabled:
            tracker.camera.capture_source = "virtual"
    return config


def _default_request_exit() -> None:
    os.kill(os.getpid(), signal.SIGINT)


def create_app(
    config_path: Path,
    demo: bool = False,
    request_exit: Callable[[], None] | None = None,
    token: str | None = None,
    extra_cors_origins: list[str] | None = None,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = ConfigStore(config_path)
        if demo and not config_path.exists():
            store.replace(demo_config())
        store.load()
        supervisor = Supervisor(store)
        context = ServiceContext(store, supervisor, demo)
        app.state.context = context
        osc_service = OscService(store, supervisor)
        context.extras[osc_routes.SERVICE_KEY] = osc_service

        def on_file_change(new: EtvrConfig, sections: set[str]) -> None:
            if store.adopt(new):
                supervisor.reconcile(store.config)

        watcher = ConfigWatcher(config_path, store.config, on_file_change)
        watcher.start()
        logger.info("ETVR Backend %s: config %s", __version__, config_path)
        if demo:
            supervisor.start()
        osc_service.start()  # the inbound listener follows osc.enable_receiving while tracking runs
        try:
            yield
        finally:
            watcher.stop()
            osc_service.close()
            supervisor.close()
            logger.info("stopped")

    app = FastAPI(
        title="ETVR Backend",
        version=__version__,
        description="Eye tracking for VR with DIY near-IR eye cameras: config, control, status and live data.",
        lifespan=lifespan,
    )
    app.state.request_exit = request_exit or _default_request_exit

    @app.exception_handler(ValidationError)
    async def validation_error(_: Request, exc: ValidationError) -> JSONResponse:
        detail = [
            {"loc": list(err["loc"]), "msg": err["msg"], "type": err["type"]}
            for err in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        return JSONResponse({"detail": detail}, status_code=422)

    # The last added is the outermost: CORS answers a browser's pre-flight before the token is checked.
    app.add_middleware(BodySizeLimit)
    if token:
        app.add_middleware(TokenAuth, token=token)
    app.add_middleware(
        CORSMiddleware,
        allow_origin_regex=DEFAULT_CORS_ORIGIN_REGEX,
        allow_origins=extra_cors_origins or [],
        allow_methods=["*"],
        allow_headers=["*"],
    )
    app.include_router(control_routes.router)
    app.include_router(config_routes.router)
    app.include_router(tracker_routes.router)
    app.include_router(camera_routes.router)
    app.include_router(feed_routes.router)
    app.include_router(live_routes.router)
    app.include_router(dashboard_routes.router)
    app.include_router(osc_routes.router)
    return app

"""Start, stop, status and shutdown (CONTRACTS §1), plus health."""

from __future__ import annotations

import logging
import threading
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from app import __version__
from app.api.context import ServiceContext, get_context
from app.api.schemas import ConfigProblemResponse, HealthResponse

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/etvr", tags=["control"])
Context = Annotated[ServiceContext, Depends(get_context)]
SHUTDOWN_DELAY_S = 0.2


@router.get("/start", response_model=bool, summary="Start all enabled trackers and OSC")
def start(context: Context) -> bool:
    context.supervisor.start()
    return True


@router.get("/stop", response_model=bool, summary="Stop all trackers")
def stop(context: Context) -> bool:
    context.supervisor.stop()
    return True


@router.get("/restart", response_model=bool, summary="Stop, then start again")
def restart(context: Context) -> bool:
    context.supervisor.restart()
    return True


@router.get("/status", response_model=bool, summary="True while tracking is running")
def status(context: Context) -> bool:
    return context.supervisor.running


@router.get("/health", response_model=HealthResponse, summary="Version, config file state and problems")
def health(context: Context) -> HealthResponse:
    store = context.store
    return HealthResponse(
        version=__version__,
        running=context.supervisor.running,
        config_path=str(store.path),
        persisted=store.persist_error is None,
        persist_error=store.persist_error,
        config_problems=[
            ConfigProblemResponse(message=p.message, backup_path=p.backup_path, at=p.at) for p in store.problems
        ],
    )


@router.get("/shutdown", response_model=bool, summary="Stop everything and exit the process")
def shutdown(context: Context, request: Request) -> bool:
    context.supervisor.stop()
    request_exit = request.app.state.request_exit
    threading.Timer(SHUTDOWN_DELAY_S, request_exit).start()
    logger.info("shutdown requested over the API")
    return True

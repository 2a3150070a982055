"""Per-tracker runtime routes: status, calibration and recentering."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException

from app.api.context import ServiceContext, get_context
from app.api.schemas import CommandResponse, RecordingResponse, TrackerStatusResponse
from app.paths import data_dir

router = APIRouter(prefix="/etvr/trackers", tags=["trackers"])
Context = Annotated[ServiceContext, Depends(get_context)]


@router.get("/status", response_model=list[TrackerStatusResponse], summary="Every tracker's processes and state")
def trackers_status(context: Context) -> list[TrackerStatusResponse]:
    supervisor = context.supervisor
    return [TrackerStatusResponse.model_validate(supervisor.tracker_status(t)) for t in context.store.config.trackers]


def _command(context: ServiceContext, command: str, uuid: str | None) -> CommandResponse:
    if uuid is not None:
        if context.store.config.tracker(uuid) is None:
            raise HTTPException(404, f"no tracker with uuid {uuid!r}")
        if not context.supervisor.is_running_tracker(uuid):
            raise HTTPException(409, f"tracker {uuid!r} is not running; start tracking first")
    elif not context.supervisor.running:
        raise HTTPException(409, "tracking is not running; start it first (GET /etvr/start)")
    return CommandResponse(command=command, trackers=context.supervisor.send_command(command, uuid))


@router.post("/calibrate", response_model=CommandResponse, summary="Start a timed calibration on all trackers")
def calibrate_all(context: Context) -> CommandResponse:
    return _command(context, "calibrate", None)


@router.post("/recenter", response_model=CommandResponse, summary="Make the current gaze the centre, all trackers")
def recenter_all(context: Context) -> CommandResponse:
    return _command(context, "recenter", None)


@router.post("/{uuid}/calibrate", response_model=CommandResponse, summary="Start a timed calibration")
def calibrate(context: Context, uuid: str) -> CommandResponse:
    return _command(context, "calibrate", uuid)


@router.post("/{uuid}/recenter", response_model=CommandResponse, summary="Make the current gaze the centre")
def recenter(context: Context, uuid: str) -> CommandResponse:
    return _command(context, "recenter", uuid)


def _running_tracker(context: ServiceContext, uuid: str) -> None:
    if context.store.config.tracker(uuid) is None:
        raise HTTPException(404, f"no tracker with uuid {uuid!r}")
    if not context.supervisor.is_running_tracker(uuid):
        raise HTTPException(409, f"tracker {uuid!r} is not running; start tracking first")


@router.post("/{uuid}/record/start", response_model=RecordingResponse, summary="Record the raw camera frames")
def record_start(context: Context, uuid: str) -> RecordingResponse:
    """Frames go to a new MJPEG/AVI file in the user data dir's `recordings` folder until `record/stop`."""
    _running_tracker(context, uuid)
    path = context.supervisor.start_recording(uuid, data_dir() / "recordings")
    if path is None:
        raise HTTPException(409, f"tracker {uuid!r} is not running")
    return RecordingResponse(path=str(path), recording=True)


@router.post("/{uuid}/record/stop", response_model=RecordingResponse, summary="Stop recording")
def record_stop(context: Context, uuid: str) -> RecordingResponse:
    _running_tracker(context, uuid)
    stopped = context.supervisor.stop_recording(uuid)
    if stopped is None:
        raise HTTPException(409, f"tracker {uuid!r} is not recording")
    path, frames = stopped
    return RecordingResponse(path=str(path), recording=False, frames=frames)

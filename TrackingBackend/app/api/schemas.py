"""Request and response bodies of the REST API (the config models themselves are in app.config.models)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.config.models import TrackerPosition

GUI_POSITIONS: dict[str, TrackerPosition] = {
    "left_eye": TrackerPosition.LEFT_EYE,
    "right_eye": TrackerPosition.RIGHT_EYE,
    "mouth": TrackerPosition.MOUTH,
}


class GuiDeviceRequest(BaseModel):
    """One device of the desktop GUI's start-up call (CONTRACTS §1). Unknown fields are ignored and logged,
    so a newer GUI cannot break start-up."""

    model_config = ConfigDict(extra="allow")

    position: Literal["left_eye", "right_eye", "mouth"] = Field(description="Which tracker this device feeds.")
    enabled: bool | None = None
    capture_source: str | None = None
    threshold: int | None = None
    focal_length: int | None = None
    rotation_angle: float | None = None
    flip_x_axis: bool | None = None
    flip_y_axis: bool | None = None
    roi_x: int | None = None
    roi_y: int | None = None
    roi_w: int | None = None
    roi_h: int | None = None


class GuiDevicesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    devices: list[GuiDeviceRequest] = Field(max_length=8, description="Devices to upsert, one per position.")


class ProcessStatusResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    alive: bool
    pid: int | None
    restarts: int
    state: str
    fps: float | None = None
    last_error: str | None = None


class TrackerStatusResponse(BaseModel):
    uuid: str
    name: str
    tracker_position: str
    enabled: bool
    running: bool
    camera_state: str
    fps: float
    last_error: str | None
    processes: dict[str, ProcessStatusResponse]
    latest: dict[str, Any] | None = Field(description="The latest tracking result (see the WebSocket schema).")


class ConfigProblemResponse(BaseModel):
    message: str
    backup_path: str | None
    at: float


class HealthResponse(BaseModel):
    version: str
    running: bool
    config_path: str
    persisted: bool = Field(description="False when the last config write failed: changes live in memory only.")
    persist_error: str | None
    config_problems: list[ConfigProblemResponse]


class CommandResponse(BaseModel):
    command: str
    trackers: list[str] = Field(description="uuids of the running trackers the command reached.")


class RecordingResponse(BaseModel):
    path: str = Field(description="The video file (MJPEG in AVI) in the user data dir.")
    recording: bool
    frames: int = Field(0, description="Frames written (known when the recording stops).")

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
    notice: str | None = None


class TrackerStatusResponse(BaseModel):
    uuid: str
    name: str
    tracker_position: str
    enabled: bool
    running: bool
    camera_state: str
    fps: float
    last_error: str | None
    notice: str | None = Field(
        None, description="Not an error, worth knowing: e.g. no program listens on an OSC target's port yet."
    )
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


class DiscoveredCameraResponse(BaseModel):
    kind: str = Field(description="Which reader the capture_source opens (e.g. openiris_wifi, serial, uvc).")
    name: str = Field(description="What to show the user.")
    capture_source: str = Field(description="The value for the tracker's camera.capture_source.")
    details: dict[str, str] = Field(default_factory=dict, description="Extra facts (USB ids, addresses...).")


# -- Live data over the WebSocket `/etvr/ws` (see docs/live-data.md) -----------------------------------------


class LiveProcessState(BaseModel):
    state: str = Field(description="The worker's own state, e.g. connecting, connected, tracking, restarting.")
    alive: bool
    restarts: int
    last_error: str | None = None


class LiveStateMessage(BaseModel):
    """A tracker's state: sent when it changes and at least once a second."""

    type: Literal["state"] = "state"
    uuid: str
    name: str
    tracker_position: str
    enabled: bool
    running: bool
    camera_state: str = Field(description="stopped, no_source, connecting, connected, disconnected, ...")
    fps: float = Field(description="Frames the tracker processed per second.")
    last_error: str | None
    notice: str | None = Field(None, description="Not an error: e.g. no program listens on an OSC target yet.")
    processes: dict[str, LiveProcessState] = Field(description="camera, tracker and osc workers.")


class LiveResultMessage(BaseModel):
    """One tracked frame of one tracker (at most `rate_hz` a second per tracker; only new frames)."""

    type: Literal["result"] = "result"
    uuid: str
    tracker_position: str
    camera_state: str
    sequence: int = Field(description="The camera frame's sequence number (restarts with the camera worker).")
    capture_ts: float = Field(description="When the frame was captured: the service's monotonic clock, seconds.")
    processed_ts: float = Field(description="When the tracker finished it: same clock.")
    latency_ms: float = Field(description="Pipeline latency, capture to result.")
    fps: float
    frame_w: int = Field(description="Width of the tracked frame (the ROI), pixels.")
    frame_h: int = Field(description="Height of the tracked frame (the ROI), pixels.")
    roi_x: int = Field(description="The ROI's left edge in the rotated camera frame (config), pixels.")
    roi_y: int = Field(description="The ROI's top edge in the rotated camera frame (config), pixels.")
    pupil_x: float | None = Field(description="Pupil centre in the tracked frame, pixels; null when not found.")
    pupil_y: float | None
    ellipse_w: float = Field(description="Pupil ellipse full width, pixels.")
    ellipse_h: float = Field(description="Pupil ellipse full height, pixels.")
    ellipse_angle: float = Field(description="Pupil ellipse rotation, degrees.")
    confidence: float = Field(description="Pupil confidence in [0, 1].")
    gaze_x: float = Field(description="Gaze in [-1, 1], +x = the user looks right.")
    gaze_y: float = Field(description="Gaze in [-1, 1], +y = up.")
    openness: float = Field(description="Eyelid openness in [0, 1], 1 = open.")
    blink: bool
    dilation: float = Field(description="Pupil dilation in [0, 1] (0.5 when not measured).")
    widen: float = Field(description="Eye widen in [0, 1].")
    squeeze: float = Field(description="Eye squeeze in [0, 1].")
    calibrating: bool
    calibration_progress: float | None = Field(description="0..1 while a calibration runs, else null.")


class LiveCalibrationMessage(BaseModel):
    type: Literal["calibration"] = "calibration"
    uuid: str
    status: Literal["started", "finished"]


class LiveErrorMessage(BaseModel):
    type: Literal["error"] = "error"
    uuid: str | None = Field(description="The tracker, or null for service-wide errors.")
    source: str = Field(description="camera, tracker, osc or config.")
    message: str


class LiveServiceMessage(BaseModel):
    type: Literal["service"] = "service"
    running: bool = Field(description="True while tracking is started (GET /etvr/start).")


class LiveConfigMessage(BaseModel):
    """The whole config after any change (API, hand edit of the file, calibration stored)."""

    type: Literal["config"] = "config"
    revision: int
    config: dict[str, Any]


class LiveHelloMessage(BaseModel):
    """The first message on every connection."""

    type: Literal["hello"] = "hello"
    version: str
    rate_hz: float = Field(description="Most result messages a second per tracker.")
    running: bool
    revision: int
    config: dict[str, Any]
    trackers: list[LiveStateMessage]

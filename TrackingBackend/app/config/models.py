"""The config file's schema: pydantic sections with defaults, bounds and descriptions.

Field names of the upstream schema-version-4 file are kept as they are (CONTRACTS §6), so the GUI and
existing scripts keep working; what the product adds lives in new fields with defaults. An empty `{}`
validates to the full default config.
"""

from __future__ import annotations

import uuid as uuid_lib
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.camera.sources import InvalidSourceError, parse_capture_source

CONFIG_VERSION = 6


class StrictModel(BaseModel):
    """Unknown fields are errors (a typo must not be silently ignored); assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TrackerPosition(StrEnum):
    LEFT_EYE = "LEFT_EYE"
    RIGHT_EYE = "RIGHT_EYE"
    MOUTH = "MOUTH"
    UNDEFINED = "UNDEFINED"


class AlgorithmName(StrEnum):
    HSF = "HSF"  # Haar surround feature: coarse centre-surround search
    HSRAC = "HSRAC"  # Haar search, then a refined robust ellipse fit
    RANSAC = "RANSAC"  # threshold + edges + RANSAC ellipse fit around the darkest region
    AHSF = "AHSF"  # adaptive Haar surround feature (multi-scale)
    BLOB = "BLOB"  # dark-blob threshold fallback
    LEAP = "LEAP"  # learned landmark model (not bundled: reported and skipped)


class BlobConfig(StrictModel):
    threshold: int = Field(65, ge=0, le=255, description="Grey level below which a pixel counts as pupil.")
    minsize: int = Field(10, ge=1, le=10_000, description="Smallest blob side accepted, in pixels.")
    maxsize: int = Field(25, ge=1, le=10_000, description="Largest blob side accepted, in pixels.")

    @model_validator(mode="after")
    def _min_below_max(self) -> Self:
        if self.minsize > self.maxsize:
            raise ValueError(f"blob.minsize ({self.minsize}) must not exceed blob.maxsize ({self.maxsize})")
        return self


class LeapConfig(StrictModel):
    blink_threshold: float = Field(0.25, ge=0.0, le=1.0, description="Openness under which LEAP reports a blink.")


class HsfConfig(StrictModel):
    skip_autoradius: bool = Field(False, description="Use a fixed search radius instead of estimating it.")
    skip_blink_detection: bool = Field(False, description="Do not use HSF's own blink statistics.")
    blink_stat_frames: int = Field(180, ge=1, le=100_000, description="Frames of history for blink statistics.")
    default_step: tuple[int, int] = Field((5, 5), description="Coarse search step (x, y) in pixels.")

    @field_validator("default_step")
    @classmethod
    def _positive_step(cls, step: tuple[int, int]) -> tuple[int, int]:
        if min(step) < 1 or max(step) > 64:
            raise ValueError(f"default_step values must be in 1..64, got {list(step)}")
        return step


class AlgorithmConfig(StrictModel):
    algorithm_order: list[AlgorithmName] = Field(
        default_factory=lambda: [AlgorithmName.HSRAC, AlgorithmName.RANSAC, AlgorithmName.BLOB],
        min_length=1,
        description="Pupil algorithms tried in order; the next runs when confidence is below the threshold.",
    )
    confidence_threshold: float = Field(
        0.5, ge=0.0, le=1.0, description="Below this confidence the next algorithm in the order is tried."
    )
    closed_eye_gate: bool = Field(
        True,
        description="Skip the pupil search on frames with nothing as dark as this user's pupil in them (a closed "
        "eye): cheaper, and no lash is taken for a pupil. While frames are skipped, every 10th is searched anyway.",
    )
    closure_classifier: bool = Field(
        True,
        description="Also flag a blink when a small network trained on real near-IR eyes sees the eye closed or "
        "closing (a closing eye can still show some pupil, which the lids alone read as mostly open). Off: the "
        "blink flag comes from the lids alone.",
    )
    still_frame_reuse: bool = Field(
        True,
        description="A frame that shows what the last fully tracked frame showed (an eye holding still: no pixel of "
        "the shrunk frame changed by more than 5 % of the pupil-to-iris contrast) reuses its pupil and lid "
        "measurements instead of being tracked again, at most 8 frames in a row, once the lids are learnt (about 5 s "
        "of a plainly seen pupil). Off: every frame is tracked in full.",
    )
    blob: BlobConfig = Field(default_factory=BlobConfig)
    leap: LeapConfig = Field(default_factory=LeapConfig)
    hsf: HsfConfig = Field(default_factory=HsfConfig)

    @field_validator("algorithm_order")
    @classmethod
    def _no_duplicates(cls, order: list[AlgorithmName]) -> list[AlgorithmName]:
        seen: set[AlgorithmName] = set()
        for name in order:
            if name in seen:
                raise ValueError(f"algorithm_order lists {name.value} more than once")
            seen.add(name)
        return order


class CameraConfig(StrictModel):
    capture_source: str = Field(
        "",
        max_length=512,
        description='Where frames come from: "virtual", an OpenIris URL, a serial port, a webcam, a video file.',
    )
    rotation: float = Field(0.0, ge=-360.0, le=360.0, description="Rotation of the frame, degrees.")
    threshold: int = Field(50, ge=0, le=255, description="Legacy threshold kept for the GUI.")
    focal_length: int = Field(30, ge=0, le=1000, description="Legacy focal length kept for the GUI.")
    flip_x_axis: bool = Field(False, description="Mirror gaze x (for cameras mounted the other way).")
    flip_y_axis: bool = Field(False, description="Mirror gaze y.")
    roi_x: int = Field(0, ge=0, le=16_384, description="ROI left edge, pixels (of the rotated frame).")
    roi_y: int = Field(0, ge=0, le=16_384, description="ROI top edge, pixels.")
    roi_w: int = Field(0, ge=0, le=16_384, description="ROI width, pixels; 0 = the whole frame.")
    roi_h: int = Field(0, ge=0, le=16_384, description="ROI height, pixels; 0 = the whole frame.")
    serial_baud: int = Field(0, ge=0, le=12_000_000, description="Serial baud rate; 0 = 3,000,000 (115,200 on macOS).")

    @field_validator("capture_source")
    @classmethod
    def _known_source(cls, source: str) -> str:
        try:
            return parse_capture_source(source).value
        except InvalidSourceError as exc:
            raise ValueError(str(exc)) from exc


class FilterConfig(StrictModel):
    enabled: bool = Field(True, description="Smooth gaze, openness and dilation with a One-Euro filter.")
    min_cutoff: float = Field(1.0, gt=0.0, le=100.0, description="One-Euro minimum cutoff, Hz (lower = smoother).")
    beta: float = Field(0.5, ge=0.0, le=100.0, description="One-Euro speed coefficient (higher = less lag).")
    d_cutoff: float = Field(1.0, gt=0.0, le=100.0, description="One-Euro derivative cutoff, Hz.")
    openness_min_cutoff: float = Field(4.0, gt=0.0, le=100.0, description="Min cutoff for openness, Hz.")
    openness_beta: float = Field(2.0, ge=0.0, le=100.0, description="Speed coefficient for openness.")


class GazeMappingConfig(StrictModel):
    """Pupil position (normalised to the tracked frame, 0..1) to gaze: the result of a calibration."""

    center_x: float = Field(0.5, ge=-1.0, le=2.0, description="Pupil x that maps to gaze 0.")
    center_y: float = Field(0.5, ge=-1.0, le=2.0, description="Pupil y that maps to gaze 0.")
    half_range_x: float = Field(0.25, gt=0.0, le=2.0, description="Pupil x offset that maps to gaze ±1.")
    half_range_y: float = Field(0.25, gt=0.0, le=2.0, description="Pupil y offset that maps to gaze ±1.")
    # A camera facing the eye sees it mirrored: the user looking right moves the pupil to the image's left.
    invert_x: bool = Field(True, description="Image x grows opposite to the user's right.")
    invert_y: bool = Field(True, description="Image y grows downwards, gaze y upwards.")


class CalibrationConfig(StrictModel):
    duration_s: float = Field(15.0, ge=2.0, le=120.0, description="Length of a timed calibration, seconds.")
    calibrated: bool = Field(False, description="True once a calibration has completed for this tracker.")
    mapping: GazeMappingConfig = Field(default_factory=GazeMappingConfig)


class TrackerConfig(StrictModel):
    enabled: bool = Field(True, description="Run this tracker when tracking starts.")
    name: str = Field("", max_length=100, description="Display name.")
    uuid: str = Field("", max_length=64, description="Unique id; generated when empty.")
    tracker_position: TrackerPosition = Field(TrackerPosition.UNDEFINED, description="Which eye (or mouth).")
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig)
    camera: CameraConfig = Field(default_factory=CameraConfig)
    filter: FilterConfig = Field(default_factory=FilterConfig)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)

    @field_validator("uuid")
    @classmethod
    def _uuid_charset(cls, value: str) -> str:
        if value and not all(ch.isalnum() or ch in "-_" for ch in value):
            raise ValueError(f"uuid {value!r} may contain only letters, digits, '-' and '_'")
        return value

    @model_validator(mode="after")
    def _fill_uuid_and_position(self) -> Self:
        if not self.uuid:
            object.__setattr__(self, "uuid", str(uuid_lib.uuid4()))
        # A tracker without a position cannot feed any output: it stays disabled (CONTRACTS §6).
        if self.tracker_position == TrackerPosition.UNDEFINED and self.enabled:
            object.__setattr__(self, "enabled", False)
        return self


OscMode = Literal["v1", "v2", "native", "module", "babble"]
# The port each mode's consumer listens on by default (CONTRACTS §2).
DEFAULT_PORT_BY_MODE: dict[str, int] = {"v1": 9000, "v2": 9000, "native": 9000, "module": 8889, "babble": 8888}
_OSC_ADDRESS_FORBIDDEN = " #*,?[]{}\x00"


def _check_osc_address(value: str) -> str:
    if not value.startswith("/") or len(value) > 256 or any(ch in value for ch in _OSC_ADDRESS_FORBIDDEN):
        raise ValueError(f"{value!r} is not an OSC address (must start with '/', no spaces or # * , ? [ ] {{ }})")
    return value


def _check_host(value: str) -> str:
    if not value or len(value) > 253 or not all(ch.isalnum() or ch in ".-:[]_" for ch in value):
        raise ValueError(f"{value!r} is not a host name or IP address")
    return value


class OscEndpointsConfig(StrictModel):
    eyes_y: str = Field("/avatar/parameters/EyesY", description="v1 vertical gaze (both eyes).")
    left_eye_x: str = Field("/avatar/parameters/LeftEyeX", description="v1 left eye horizontal gaze.")
    right_eye_x: str = Field("/avatar/parameters/RightEyeX", description="v1 right eye horizontal gaze.")
    recenter: str = Field("/avatar/parameters/etvr_recenter", description="Inbound: recenter (bool True).")
    sync_blink: str = Field("/avatar/parameters/etvr_sync_blink", description="Inbound: toggle sync blink.")
    recalibrate: str = Field("/avatar/parameters/etvr_recalibrate", description="Inbound: recalibrate.")
    left_eye_blink: str = Field("/avatar/parameters/LeftEyeLidExpandedSqueeze", description="v1 left eye openness.")
    right_eye_blink: str = Field("/avatar/parameters/RightEyeLidExpandedSqueeze", description="v1 right eye openness.")
    eyes_dilation: str = Field("/avatar/parameters/EyesDilation", description="v1 pupil dilation (both eyes).")

    @field_validator("*")
    @classmethod
    def _osc_address(cls, value: str) -> str:
        return _check_osc_address(value)


class OscTargetConfig(StrictModel):
    """One OSC consumer. Empty (null) fields inherit the top-level single-target fields of the v4 schema."""

    name: str = Field("", max_length=64, description="Display name, e.g. 'VRChat' or 'VRCFT Babble'.")
    enabled: bool = Field(True, description="Send to this target.")
    mode: OscMode | None = Field(
        None, description="Output format; null = the top-level osc.mode / vrchat_native_tracking (legacy target)."
    )
    address: str | None = Field(None, max_length=253, description="Host; null = the top-level osc.address.")
    port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="UDP port; null = osc.sending_port when mode is null too, else the mode's default "
        "(v1/v2/native 9000, module 8889, babble 8888).",
    )
    auto_port: bool = Field(
        False, description="Use VRChat's OSC input port found through its OSCQuery advertisement, else `port`."
    )
    prefix: str = Field("", max_length=128, description="Address prefix put before every address, e.g. '/etvr'.")
    lid_encoding: Literal["openness", "expanded"] = Field(
        "openness",
        description="v1 lids: plain openness, or VRCFT's expanded range (0..0.8 open, 0.8..1 widen, squeeze lowers).",
    )

    @field_validator("address")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        return None if value is None else _check_host(value)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if value and (value.endswith("/") or len(value) < 2):
            raise ValueError(f"prefix {value!r} must be empty or an OSC address without a trailing '/'")
        return _check_osc_address(value) if value else value


def default_outputs() -> list[OscTargetConfig]:
    return [OscTargetConfig(name="VRChat")]


class OscConfig(StrictModel):
    address: str = Field("127.0.0.1", min_length=1, max_length=253, description="Host of the legacy target.")
    mirror_eyes: bool = Field(False, description="One eye drives both.")
    sync_blink: bool = Field(False, description="Both lids take the lower openness.")
    enable_sending: bool = Field(True, description="Send OSC (master switch for every target).")
    sending_port: int = Field(9000, ge=1, le=65535, description="UDP port of the legacy target.")
    enable_receiving: bool = Field(False, description="Listen for recenter/recalibrate/sync-blink commands.")
    receiver_port: int = Field(9001, ge=1, le=65535, description="UDP port of the inbound listener.")
    vrchat_native_tracking: bool = Field(
        False, description="The GUI's switch for mode 'native' of the legacy target; it wins over `mode`."
    )
    mode: OscMode = Field("v1", description="Legacy target's format: v1, v2, native, module or babble.")
    endpoints: OscEndpointsConfig = Field(default_factory=OscEndpointsConfig)
    native_look: Literal["vec", "pitch_yaw"] = Field(
        "vec", description="Native mode's eye-look address: LeftRightVec or LeftRightPitchYaw (degrees)."
    )
    native_max_angle_deg: float = Field(
        45.0, ge=1.0, le=90.0, description="Native pitch/yaw: the angle gaze ±1 stands for, degrees."
    )
    oscquery: bool = Field(True, description="Advertise the inbound listener with OSCQuery (mDNS) when receiving.")
    outputs: list[OscTargetConfig] = Field(
        default_factory=default_outputs, max_length=8, description="OSC targets, all fed from the same results."
    )

    @field_validator("address")
    @classmethod
    def _host(cls, value: str) -> str:
        try:
            return _check_host(value)
        except ValueError as exc:
            raise ValueError(f"osc.address: {exc}") from exc

    @model_validator(mode="after")
    def _native_switch_wins(self) -> Self:
        # Deep-merged updates cannot tell which of the two changed; the GUI's switch decides native or not.
        if self.vrchat_native_tracking and self.mode != "native":
            object.__setattr__(self, "mode", "native")
        elif not self.vrchat_native_tracking and self.mode == "native":
            object.__setattr__(self, "mode", "v1")
        return self


def default_trackers() -> list[TrackerConfig]:
    return [
        TrackerConfig(name="Left Eye", tracker_position=TrackerPosition.LEFT_EYE),
        TrackerConfig(name="Right Eye", tracker_position=TrackerPosition.RIGHT_EYE),
        TrackerConfig(name="Mouth", tracker_position=TrackerPosition.MOUTH, enabled=False),
    ]


class EtvrConfig(StrictModel):
    version: Annotated[int, Field(ge=1, le=CONFIG_VERSION)] = Field(
        CONFIG_VERSION, description="Schema version of this file."
    )
    debug: bool = Field(False, description="Verbose logging.")
    affinity_mask: str = Field(
        "", max_length=64, description='CPU mask for worker processes, e.g. "0x3" or "0b10"; "" = all CPUs.'
    )
    preview_fps: float = Field(30.0, ge=1.0, le=120.0, description="Maximum frame rate of the MJPEG previews.")
    osc: OscConfig = Field(default_factory=OscConfig)
    trackers: list[TrackerConfig] = Field(default_factory=default_trackers, max_length=128)

    @field_validator("affinity_mask")
    @classmethod
    def _mask(cls, value: str) -> str:
        if value:
            try:
                mask = int(value, 0)
            except ValueError as exc:
                raise ValueError(f"affinity_mask {value!r} is not an integer mask like '0x3'") from exc
            if mask <= 0:
                raise ValueError(f"affinity_mask {value!r} selects no CPU")
        return value

    @model_validator(mode="after")
    def _unique_uuids_and_positions(self) -> Self:
        seen_uuids: set[str] = set()
        enabled_at: dict[TrackerPosition, str] = {}
        for tracker in self.trackers:
            if tracker.uuid in seen_uuids:
                raise ValueError(f"tracker uuid {tracker.uuid!r} is used more than once")
            seen_uuids.add(tracker.uuid)
            if tracker.enabled:
                other = enabled_at.get(tracker.tracker_position)
                if other is not None:
                    raise ValueError(
                        f"trackers {other!r} and {tracker.name or tracker.uuid!r} are both enabled at "
                        f"{tracker.tracker_position.value}; enable one tracker per position"
                    )
                enabled_at[tracker.tracker_position] = tracker.name or tracker.uuid
        return self

    def tracker(self, tracker_uuid: str) -> TrackerConfig | None:
        return next((t for t in self.trackers if t.uuid == tracker_uuid), None)

    def affinity_cpus(self) -> list[int]:
        if not self.affinity_mask:
            return []
        mask = int(self.affinity_mask, 0)
        return [cpu for cpu in range(mask.bit_length()) if mask >> cpu & 1]

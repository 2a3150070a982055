"""Config routes of CONTRACTS §1: the whole config, and one tracker at a time."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query

from app.api.context import ServiceContext, get_context
from app.api.schemas import GUI_POSITIONS, GuiDeviceRequest, GuiDevicesRequest
from app.config.models import EtvrConfig, TrackerConfig, TrackerPosition
from app.config.store import deep_merge

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/etvr", tags=["config"])

Context = Annotated[ServiceContext, Depends(get_context)]
UuidQuery = Annotated[str, Query(min_length=1, max_length=64, description="The tracker's uuid.")]
JsonObject = dict[str, Any]
DEFAULT_NAMES = {
    TrackerPosition.LEFT_EYE: "Left Eye",
    TrackerPosition.RIGHT_EYE: "Right Eye",
    TrackerPosition.MOUTH: "Mouth",
}


def unprocessable(message: str, *loc: str) -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors (the schema `/docs` declares for 422)."""
    return HTTPException(422, [{"loc": ["body", *loc], "msg": message, "type": "value_error"}])


def _changed(context: ServiceContext, new: EtvrConfig) -> EtvrConfig:
    context.supervisor.reconcile(new)
    return new


def _tracker_or_404(config: EtvrConfig, uuid: str) -> TrackerConfig:
    tracker = config.tracker(uuid)
    if tracker is None:
        raise HTTPException(404, f"no tracker with uuid {uuid!r}")
    return tracker


def _replace_tracker(context: ServiceContext, uuid: str, tracker_doc: JsonObject) -> EtvrConfig:
    doc = context.store.config.model_dump(mode="json")
    doc["trackers"] = [tracker_doc if t["uuid"] == uuid else t for t in doc["trackers"]]
    return _changed(context, context.store.update({"trackers": doc["trackers"]}))


@router.get("/config", response_model=EtvrConfig, summary="The whole config")
def get_config(context: Context) -> EtvrConfig:
    return context.store.config


PARTIAL_CONFIG_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EtvrConfig"}}},
        "description": "Any part of the config: objects merge key by key, lists replace. Unknown keys are refused.",
    }
}


@router.post(
    "/config",
    response_model=EtvrConfig,
    summary="Partial update (deep merge), validated as a whole",
    openapi_extra=PARTIAL_CONFIG_BODY,
)
def update_config(
    context: Context, patch: Annotated[JsonObject, Body(description="Any part of the config")]
) -> EtvrConfig:
    return _changed(context, context.store.update(patch))


def _persisted(context: ServiceContext, config: EtvrConfig) -> EtvrConfig:
    if context.store.persist_error:
        raise HTTPException(503, context.store.persist_error)
    return config


@router.get("/config/save", response_model=EtvrConfig, summary="Save the config to its file")
@router.get("/save", response_model=EtvrConfig, summary="Save (the GUI's spelling)")
def save_config(context: Context) -> EtvrConfig:
    return _persisted(context, context.store.save())


@router.get("/config/load", response_model=EtvrConfig, summary="Reload the config from its file")
@router.get("/load", response_model=EtvrConfig, summary="Load (the GUI's spelling)")
def load_config(context: Context) -> EtvrConfig:
    return _changed(context, context.store.load())


@router.get("/config/reset", response_model=EtvrConfig, summary="Reset the whole config to defaults")
def reset_config(context: Context) -> EtvrConfig:
    return _changed(context, context.store.reset())


@router.get("/config/trackers", response_model=list[TrackerConfig], summary="All tracker configs")
def list_trackers(context: Context) -> list[TrackerConfig]:
    return context.store.config.trackers


@router.get("/config/tracker", response_model=TrackerConfig, summary="One tracker's config")
def get_tracker(context: Context, uuid: UuidQuery) -> TrackerConfig:
    return _tracker_or_404(context.store.config, uuid)


@router.put("/config/tracker", response_model=TrackerConfig, status_code=200, summary="Create a tracker")
def create_tracker(
    context: Context,
    body: Annotated[JsonObject, Body(description="A tracker config; defaults fill what is missing")],
) -> TrackerConfig:
    tracker = TrackerConfig.model_validate(body)
    with context.store.lock:
        if context.store.config.tracker(tracker.uuid) is not None:
            raise HTTPException(409, f"a tracker with uuid {tracker.uuid!r} already exists")
        doc = context.store.config.model_dump(mode="json")
        doc["trackers"].append(tracker.model_dump(mode="json"))
        _changed(context, context.store.update({"trackers": doc["trackers"]}))
    return _tracker_or_404(context.store.config, tracker.uuid)


def _upsert_devices(context: ServiceContext, devices: list[GuiDeviceRequest]) -> EtvrConfig:
    positions = [d.position for d in devices]
    if len(set(positions)) != len(positions):
        raise unprocessable(f"devices name a position more than once: {positions}", "devices")
    with context.store.lock:
        doc = context.store.config.model_dump(mode="json")
        for device in devices:
            if device.model_extra:
                logger.warning("ignoring unknown GUI device fields: %s", sorted(device.model_extra))
            position = GUI_POSITIONS[device.position]
            camera_patch: JsonObject = {}
            for field in (
                "capture_source",
                "threshold",
                "focal_length",
                "flip_x_axis",
                "flip_y_axis",
                "roi_x",
                "roi_y",
                "roi_w",
                "roi_h",
            ):
                value = getattr(device, field)
                if value is not None:
                    camera_patch[field] = value
            if device.rotation_angle is not None:
                camera_patch["rotation"] = device.rotation_angle
            at_position = [t for t in doc["trackers"] if t["tracker_position"] == position.value]
            target = next((t for t in at_position if t["enabled"]), at_position[0] if at_position else None)
            if target is None:
                target = TrackerConfig(name=DEFAULT_NAMES[position], tracker_position=position).model_dump(mode="json")
                doc["trackers"].append(target)
            target["camera"] = deep_merge(target["camera"], camera_patch)
            if device.enabled is not None:
                target["enabled"] = device.enabled
        return _changed(context, context.store.update({"trackers": doc["trackers"]}))


@router.post(
    "/config/tracker",
    summary="Partial update of one tracker, or the GUI's start-up upsert",
    description=(
        "With `?uuid=`: deep-merge the body into that tracker. Without a uuid: the desktop GUI's start-up call, "
        '`{"devices": [{"position": "left_eye", "capture_source": "http://…"}, …]}`, which updates (or creates) '
        "the tracker at each position and answers 200 with the whole config."
    ),
)
def update_tracker(
    context: Context,
    body: Annotated[JsonObject, Body(description="Tracker fields to change, or {devices: [...]}")],
    uuid: Annotated[str | None, Query(max_length=64, description="The tracker's uuid")] = None,
) -> Any:
    if uuid is None:
        if "devices" not in body:
            raise unprocessable('give ?uuid= to update a tracker, or a body {"devices": [...]} to upsert by position')
        request = GuiDevicesRequest.model_validate(body)
        return _upsert_devices(context, request.devices).model_dump(mode="json")
    with context.store.lock:
        current = _tracker_or_404(context.store.config, uuid).model_dump(mode="json")
        if "uuid" in body and body["uuid"] != uuid:
            raise unprocessable("a tracker's uuid cannot be changed", "uuid")
        _replace_tracker(context, uuid, deep_merge(current, body))
    return _tracker_or_404(context.store.config, uuid).model_dump(mode="json")


@router.delete("/config/tracker", response_model=bool, summary="Delete one tracker")
def delete_tracker(context: Context, uuid: UuidQuery) -> bool:
    with context.store.lock:
        _tracker_or_404(context.store.config, uuid)
        doc = context.store.config.model_dump(mode="json")
        doc["trackers"] = [t for t in doc["trackers"] if t["uuid"] != uuid]
        _changed(context, context.store.update({"trackers": doc["trackers"]}))
    return True


@router.get("/config/tracker/reset", response_model=TrackerConfig, summary="Reset one tracker to defaults")
def reset_tracker(context: Context, uuid: UuidQuery) -> TrackerConfig:
    """Everything goes back to defaults except the uuid, the name, the position and whether it is enabled."""
    with context.store.lock:
        current = _tracker_or_404(context.store.config, uuid)
        fresh = TrackerConfig(
            uuid=current.uuid,
            name=current.name,
            tracker_position=current.tracker_position,
            enabled=current.enabled,
        )
        _replace_tracker(context, uuid, fresh.model_dump(mode="json"))
    return _tracker_or_404(context.store.config, uuid)

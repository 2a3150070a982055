"""`GET /etvr/osc/status`: per-target counters, the inbound listener (port in use, OSCQuery) and VRChat."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from app.api.context import ServiceContext, get_context
from app.osc.service import OscService

router = APIRouter(prefix="/etvr/osc", tags=["osc"])
Context = Annotated[ServiceContext, Depends(get_context)]
SERVICE_KEY = "osc"


class OscTargetStatusResponse(BaseModel):
    index: int = Field(description="Position in osc.outputs.")
    name: str
    mode: str
    address: str
    port: int = Field(description="The port in use (VRChat's advertised one for an auto_port target).")
    auto_port: bool
    messages_sent: int = Field(description="Datagrams sent, all OSC processes added up.")
    send_errors: int
    last_error: str | None
    listening: bool = Field(
        True, description="False while datagrams are refused: no program listens on the port (yet)."
    )


class OscQueryStatusResponse(BaseModel):
    enabled: bool
    name: str | None
    osc_port: int | None = Field(description="UDP port advertised for VRChat to send to.")
    http_port: int | None
    advertised: bool
    error: str | None


class OscReceiverStatusResponse(BaseModel):
    enabled: bool = Field(description="enable_receiving and tracking running.")
    host: str | None
    port: int | None
    listening: bool = Field(description="False when the fixed port could not be opened (see error).")
    error: str | None
    received: int
    commands: dict[str, int]
    oscquery: OscQueryStatusResponse


class VrchatServiceResponse(BaseModel):
    name: str
    address: str
    osc_port: int


class OscStatusResponse(BaseModel):
    sending: bool
    targets: list[OscTargetStatusResponse]
    receiver: OscReceiverStatusResponse
    vrchat: VrchatServiceResponse | None = Field(description="VRChat's OSC input, when found over OSCQuery.")


def osc_service(context: ServiceContext) -> OscService:
    service: Any = context.extras.get(SERVICE_KEY)
    if not isinstance(service, OscService):
        raise HTTPException(503, "the OSC service is not running")
    return service


@router.get("/status", response_model=OscStatusResponse, summary="OSC targets, inbound listener, VRChat")
def status(context: Context) -> OscStatusResponse:
    return OscStatusResponse.model_validate(osc_service(context).status())

"""Camera discovery for the source picker: serial ports, video devices and OpenIris cameras on the network."""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Query

from app.api.schemas import DiscoveredCameraResponse

router = APIRouter(prefix="/etvr", tags=["cameras"])

MAX_MDNS_TIMEOUT_S = 10.0


@router.get(
    "/cameras",
    response_model=list[DiscoveredCameraResponse],
    summary="Cameras the user can pick as a capture_source",
    description=(
        "Serial ports, video devices and OpenIris cameras announced over mDNS (`_openiristracker._tcp`). "
        "Nothing is opened. The mDNS browse takes `mdns_timeout_s` (0 skips it). The built-in virtual eye "
        '(`"virtual"`) is always available and not listed.'
    ),
)
async def list_cameras(
    mdns_timeout_s: Annotated[
        float, Query(ge=0.0, le=MAX_MDNS_TIMEOUT_S, description="How long to listen for mDNS answers, seconds.")
    ] = 3.0,
) -> list[DiscoveredCameraResponse]:
    # Imported here: discovery pulls in zeroconf and pyserial, which only this route needs.
    from app.camera import discovery

    found = await anyio.to_thread.run_sync(lambda: discovery.list_cameras(mdns_timeout_s))
    return [
        DiscoveredCameraResponse(
            kind=str(camera.kind.value), name=camera.name, capture_source=camera.capture_source, details=camera.details
        )
        for camera in found
    ]

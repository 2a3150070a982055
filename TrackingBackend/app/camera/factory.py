"""Open the right reader for a `capture_source` string (the camera process's one entry point)."""

from __future__ import annotations

from app.camera.base import FrameSource, SourceError
from app.camera.sources import InvalidSourceError, SourceKind, parse_capture_source


def open_source(capture_source: str, *, serial_baud: int = 0, paced: bool = True) -> FrameSource:
    """Build and open the source; SourceError when it cannot be opened now (the caller retries with backoff)."""
    source = make_source(capture_source, serial_baud=serial_baud, paced=paced)
    source.open()
    return source


def make_source(capture_source: str, *, serial_baud: int = 0, paced: bool = True) -> FrameSource:
    """Build the source without opening it (a caller that reconnects can keep one object and its counters).

    `serial_baud` 0 means the platform default; `paced` applies to video files and the virtual eye.
    An invalid string raises SourceError too, with the accepted forms in its message.
    """
    try:
        parsed = parse_capture_source(capture_source)
    except InvalidSourceError as exc:
        raise SourceError(str(exc)) from exc
    source: FrameSource
    if parsed.kind is SourceKind.NONE:
        raise SourceError("no capture_source configured")
    if parsed.kind is SourceKind.VIRTUAL:
        from app.camera.virtual_eye import VirtualEyeSource

        source = VirtualEyeSource(preset=parsed.detail or "default", paced=paced)
    elif parsed.kind is SourceKind.HTTP_MJPEG:
        from app.camera.mjpeg_http import MjpegHttpSource

        source = MjpegHttpSource(parsed.value)
    elif parsed.kind is SourceKind.SERIAL:
        from app.camera.openiris_serial import OpenIrisSerialSource

        source = OpenIrisSerialSource(parsed.value, serial_baud)
    elif parsed.kind is SourceKind.UVC:
        from app.camera.uvc import UvcSource

        source = UvcSource(parsed.detail or parsed.value)
    elif parsed.kind is SourceKind.VIDEO_FILE:
        from app.camera.video_file import VideoFileSource

        source = VideoFileSource(parsed.value, paced=paced)
    else:  # a kind added to the parser but not here
        raise SourceError(f"no reader for capture source kind {parsed.kind!s}")
    return source

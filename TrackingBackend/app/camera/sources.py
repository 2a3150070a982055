"""What kind of camera a `capture_source` string names (pure: no I/O).

One parser decides for the config validator (a 422 that lists the accepted forms), the camera process
(which reader to open) and the camera discovery route (which string to offer).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit


class SourceKind(StrEnum):
    NONE = "none"
    VIRTUAL = "virtual"
    HTTP_MJPEG = "http"
    SERIAL = "serial"
    UVC = "uvc"
    VIDEO_FILE = "video_file"


VIDEO_FILE_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".mjpeg", ".mjpg", ".m4v")

ACCEPTED_FORMS = (
    '"" (no camera)',
    '"virtual" or "virtual:<preset>" (the built-in virtual eye)',
    '"http://host[:port][/path]" (OpenIris Wi-Fi MJPEG stream; *.local names resolve over mDNS)',
    '"COM3", "/dev/ttyACM0", "/dev/ttyUSB0", "/dev/cu.usbmodem1101", "/dev/serial/by-id/..." or '
    '"/dev/pts/N" (OpenIris over USB serial)',
    '"0", "1", ... or "/dev/videoN" (UVC webcam)',
    f"a path to a video file ending in {', '.join(VIDEO_FILE_SUFFIXES)}",
)

_SERIAL_PATTERN = re.compile(
    r"^(COM\d{1,3}|/dev/tty(ACM|USB|S|AMA)\d{1,3}|/dev/cu\.[\w.\-]+|/dev/tty\.[\w.\-]+"
    r"|/dev/serial/[\w.:/\-]+|/dev/pts/\d{1,5})$",
    re.IGNORECASE,
)
_UVC_DEVICE_PATTERN = re.compile(r"^/dev/video\d{1,3}$")
_UVC_INDEX_PATTERN = re.compile(r"^\d{1,2}$")
_HOST_PATTERN = re.compile(r"^[A-Za-z0-9.\-]+$|^\[[0-9A-Fa-f:.]+\]$")
# FFmpeg/OpenCV pseudo-protocols and URL schemes that must never reach a decoder.
_SCHEME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")

MAX_SOURCE_LENGTH = 512


class InvalidSourceError(ValueError):
    """A capture source that fits none of the accepted forms."""


@dataclass(frozen=True, slots=True)
class CaptureSource:
    kind: SourceKind
    value: str
    # VIRTUAL: preset name; UVC: index or device path; others: the value itself.
    detail: str = ""


def _invalid(value: str, why: str) -> InvalidSourceError:
    forms = "; ".join(ACCEPTED_FORMS)
    return InvalidSourceError(f"capture_source {value!r} is not supported ({why}). Accepted forms: {forms}")


def parse_capture_source(raw: str) -> CaptureSource:
    """Classify a capture source, raising InvalidSourceError with the accepted forms when none fits."""
    value = raw.strip()
    if len(value) > MAX_SOURCE_LENGTH:
        raise _invalid(value[:40] + "...", f"longer than {MAX_SOURCE_LENGTH} characters")
    if any(ch in value for ch in "\x00\r\n\t"):
        raise _invalid(value, "contains control characters")
    if value == "":
        return CaptureSource(SourceKind.NONE, value)
    if value == "virtual" or value.startswith("virtual:"):
        preset = value.partition(":")[2] or "default"
        if not re.fullmatch(r"[a-z0-9_\-]{1,32}", preset):
            raise _invalid(value, "a virtual preset name is 1-32 of a-z, 0-9, _ and -")
        return CaptureSource(SourceKind.VIRTUAL, value, preset)
    if _UVC_INDEX_PATTERN.match(value):
        return CaptureSource(SourceKind.UVC, value, value)
    if _UVC_DEVICE_PATTERN.match(value):
        return CaptureSource(SourceKind.UVC, value, value)
    if _SERIAL_PATTERN.match(value):
        return CaptureSource(SourceKind.SERIAL, value)
    lowered = value.lower()
    if lowered.startswith(("http://", "https://")):
        parts = urlsplit(value)
        if not parts.hostname or not _HOST_PATTERN.match(parts.netloc.rsplit("@", 1)[-1].rsplit(":", 1)[0]):
            raise _invalid(value, "the URL has no valid host")
        if parts.username or parts.password:
            raise _invalid(value, "credentials in the URL are not supported")
        try:
            _ = parts.port
        except ValueError as exc:
            raise _invalid(value, "the URL port is not a number from 1 to 65535") from exc
        return CaptureSource(SourceKind.HTTP_MJPEG, value)
    # Windows drive letters look like a scheme ("C:\\eyes.mp4"); everything else with a scheme is refused.
    is_windows_path = re.match(r"^[A-Za-z]:[\\/]", value) is not None
    if _SCHEME_PATTERN.match(value) and not is_windows_path:
        raise _invalid(value, "that URL scheme or protocol is not allowed")
    if lowered.endswith(VIDEO_FILE_SUFFIXES):
        if value.startswith("/dev/") or value.startswith("/proc/") or value.startswith("/sys/"):
            raise _invalid(value, "device and kernel paths are not video files")
        return CaptureSource(SourceKind.VIDEO_FILE, value)
    raise _invalid(value, "not a known camera, stream or video file")

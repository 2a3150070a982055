from __future__ import annotations

import pytest

from app.camera.sources import InvalidSourceError, SourceKind, parse_capture_source


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ("", SourceKind.NONE),
        ("virtual", SourceKind.VIRTUAL),
        ("virtual:hard", SourceKind.VIRTUAL),
        ("http://openiristracker.local/", SourceKind.HTTP_MJPEG),
        ("http://192.168.4.1:80/", SourceKind.HTTP_MJPEG),
        ("COM3", SourceKind.SERIAL),
        ("/dev/ttyACM0", SourceKind.SERIAL),
        ("/dev/cu.usbmodem1101", SourceKind.SERIAL),
        ("/dev/pts/7", SourceKind.SERIAL),
        ("0", SourceKind.UVC),
        ("/dev/video2", SourceKind.UVC),
        ("/home/me/eyes.mp4", SourceKind.VIDEO_FILE),
        ("C:\\Users\\me\\eye.avi", SourceKind.VIDEO_FILE),
    ],
)
def test_accepted_forms(raw: str, kind: SourceKind) -> None:
    assert parse_capture_source(raw).kind == kind


@pytest.mark.parametrize(
    "raw",
    [
        "file:///etc/passwd",
        "rtsp://cam/stream",
        "concat:a.mp4|b.mp4",
        "subfile:x.mp4",
        "/etc/passwd",
        "http://",
        "http://user:pw@cam/",
        "virtual:Bad Name",
        "/dev/video.mp4",
        "ftp://x/y.mp4",
    ],
)
def test_refused_forms_name_the_accepted_ones(raw: str) -> None:
    with pytest.raises(InvalidSourceError, match="Accepted forms"):
        parse_capture_source(raw)

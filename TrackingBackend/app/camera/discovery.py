"""Find cameras the user can pick: serial ports, video devices and OpenIris cameras announced over mDNS.

Each entry carries the `capture_source` string to put in the config. Nothing is opened or probed:
- serial ports come from the OS list (pyserial); USB ports first, with Espressif / USB-serial bridge chips
  marked as likely OpenIris cameras; Linux's legacy `/dev/ttyS*` ports without hardware are left out;
- video devices are the `/dev/video*` files on Linux (named from sysfs). Other OSes have no device files, and
  probing indices would open (and on some systems switch on) every camera, so there nothing is listed: the
  user types an index such as `0`;
- OpenIris cameras answer a `_openiristracker._tcp.local.` browse within `mdns_timeout_s` (TXT `stream_port`,
  `api_port`). When multicast is unavailable this part is empty and logged, never raised.
"""

from __future__ import annotations

import logging
import re
import socket
import sys
import threading
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from app.camera.sources import InvalidSourceError, SourceKind, parse_capture_source

logger = logging.getLogger(__name__)

OPENIRIS_SERVICE_TYPE = "_openiristracker._tcp.local."
DEFAULT_STREAM_PORT = 80
# USB vendor ids of the chips OpenIris boards use: Espressif's native USB, WCH CH34x, Silicon Labs CP210x.
LIKELY_CAMERA_USB_VIDS = {0x303A: "Espressif", 0x1A86: "WCH", 0x10C4: "Silicon Labs"}
_MDNS_POLL_S = 0.05


class DiscoveredCamera(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: SourceKind = Field(description="Which reader the capture_source opens.")
    name: str = Field(description="What to show the user.")
    capture_source: str = Field(description="The value for the tracker's camera.capture_source.")
    details: dict[str, str] = Field(default_factory=dict, description="Extra facts (USB ids, addresses...).")


def list_cameras(mdns_timeout_s: float = 3.0, *, mdns_interfaces: list[str] | None = None) -> list[DiscoveredCamera]:
    """Serial ports, video devices and OpenIris cameras on the network (mdns_timeout_s <= 0 skips mDNS)."""
    cameras = list_serial_ports() + list_video_devices()
    if mdns_timeout_s > 0:
        cameras += browse_openiris(mdns_timeout_s, interfaces=mdns_interfaces)
    return cameras


def _accepted(capture_source: str, kind: SourceKind) -> bool:
    try:
        return parse_capture_source(capture_source).kind is kind
    except InvalidSourceError:
        return False


def list_serial_ports() -> list[DiscoveredCamera]:
    try:
        from serial.tools import list_ports

        ports = list(list_ports.comports())
    except Exception as exc:  # a broken platform backend must not break discovery
        logger.warning("cannot list serial ports: %s", exc)
        return []
    found: list[tuple[int, DiscoveredCamera]] = []
    for port in ports:
        device = str(port.device)
        vid = port.vid if isinstance(port.vid, int) else None
        if vid is None and re.fullmatch(r"/dev/ttyS\d+", device):
            continue  # a legacy UART the kernel always lists, almost never a camera
        if not _accepted(device, SourceKind.SERIAL):
            continue
        details = {"hwid": str(port.hwid)}
        if vid is not None:
            details["usb_vid"] = f"{vid:04X}"
            details["usb_pid"] = f"{port.pid:04X}" if isinstance(port.pid, int) else ""
        for key in ("manufacturer", "product", "serial_number"):
            value = getattr(port, key, None)
            if value:
                details[key] = str(value)
        likely = vid in LIKELY_CAMERA_USB_VIDS
        if likely:
            details["likely_openiris"] = "yes"
        description = str(port.description) if port.description and port.description != "n/a" else ""
        name = f"{description} ({device})" if description and device not in description else device
        rank = 0 if likely else (1 if vid is not None else 2)
        found.append(
            (rank, DiscoveredCamera(kind=SourceKind.SERIAL, name=name, capture_source=device, details=details))
        )
    found.sort(key=lambda item: (item[0], item[1].capture_source))
    return [camera for _, camera in found]


def list_video_devices(
    dev_dir: Path = Path("/dev"), sysfs_dir: Path = Path("/sys/class/video4linux"), platform: str = sys.platform
) -> list[DiscoveredCamera]:
    """`/dev/videoN` files on Linux, named from sysfs; nothing elsewhere (see the module docstring)."""
    if not platform.startswith("linux"):
        return []
    cameras: list[tuple[int, DiscoveredCamera]] = []
    try:
        paths = list(dev_dir.glob("video*"))
    except OSError as exc:
        logger.warning("cannot list %s: %s", dev_dir, exc)
        return []
    for path in paths:
        match = re.fullmatch(r"video(\d{1,3})", path.name)
        if match is None:
            continue
        capture_source = f"/dev/{path.name}"  # dev_dir differs from /dev only in tests
        details = {"device": str(path)}
        label = _read_sysfs(sysfs_dir / path.name / "name")
        # A UVC camera exposes a capture node (index 0) and a metadata node (index 1).
        index = _read_sysfs(sysfs_dir / path.name / "index")
        if index:
            details["node_index"] = index
        if label:
            details["name"] = label
        name = f"{label} ({capture_source})" if label else capture_source
        cameras.append(
            (
                int(match.group(1)),
                DiscoveredCamera(kind=SourceKind.UVC, name=name, capture_source=capture_source, details=details),
            )
        )
    cameras.sort(key=lambda item: item[0])
    return [camera for _, camera in cameras]


def _read_sysfs(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


def browse_openiris(timeout_s: float = 3.0, *, interfaces: list[str] | None = None) -> list[DiscoveredCamera]:
    """OpenIris cameras answering an mDNS browse within `timeout_s`; [] when multicast is unavailable."""
    if interfaces and not interfaces_present(interfaces):
        logger.warning("mDNS camera discovery unavailable: none of the interfaces %s is on this host", interfaces)
        return []
    try:
        from zeroconf import IPVersion, ServiceBrowser, ServiceStateChange, Zeroconf

        zc = Zeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only) if interfaces else Zeroconf()
    except Exception as exc:  # no multicast-capable interface, sandbox, firewall, missing package
        logger.warning("mDNS camera discovery unavailable: %s", exc)
        return []
    names: list[str] = []
    lock = threading.Lock()

    def on_change(zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if state_change is ServiceStateChange.Added:
            with lock:
                if name not in names:
                    names.append(name)

    cameras: list[DiscoveredCamera] = []
    deadline = time.monotonic() + timeout_s
    try:
        browser = ServiceBrowser(zc, OPENIRIS_SERVICE_TYPE, handlers=[on_change])
        resolved: set[str] = set()
        try:
            while (remaining_s := deadline - time.monotonic()) > 0:
                with lock:
                    pending = [n for n in names if n not in resolved]
                for name in pending:
                    resolved.add(name)
                    camera = _resolve_service(zc, name, max(0.1, deadline - time.monotonic()))
                    if camera is not None:
                        cameras.append(camera)
                time.sleep(min(_MDNS_POLL_S, max(0.0, remaining_s)))
        finally:
            browser.cancel()
    except Exception as exc:
        logger.warning("mDNS camera discovery failed: %s", exc)
    finally:
        zc.close()
    return sorted(cameras, key=lambda camera: camera.name)


def _resolve_service(zc: object, name: str, timeout_s: float) -> DiscoveredCamera | None:
    from zeroconf import Zeroconf

    assert isinstance(zc, Zeroconf)
    info = zc.get_service_info(OPENIRIS_SERVICE_TYPE, name, timeout=int(timeout_s * 1000))
    if info is None:
        logger.info("OpenIris camera %s did not answer its service lookup", name)
        return None
    properties = {
        key.decode("utf-8", "replace"): (value or b"").decode("utf-8", "replace")
        for key, value in info.properties.items()
    }
    stream_port = _port(properties.get("stream_port")) or DEFAULT_STREAM_PORT
    addresses = [a for a in info.parsed_addresses() if ":" not in a]
    host = (info.server or "").rstrip(".")
    capture_source = f"http://{host}:{stream_port}/"
    if not host or not _accepted(capture_source, SourceKind.HTTP_MJPEG):
        if not addresses:
            return None
        capture_source = f"http://{addresses[0]}:{stream_port}/"
    instance = name.removesuffix("." + OPENIRIS_SERVICE_TYPE)
    details = {"service": name, "host": host, "stream_port": str(stream_port), "addresses": ", ".join(addresses)}
    api_port = _port(properties.get("api_port"))
    if api_port:
        details["api_port"] = str(api_port)
    return DiscoveredCamera(
        kind=SourceKind.HTTP_MJPEG, name=f"OpenIris {instance}", capture_source=capture_source, details=details
    )


def _port(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    port = int(value.strip())
    return port if 0 < port < 65536 else None


def interfaces_present(addresses: list[str]) -> bool:
    """Whether any of these IPv4 addresses belongs to this host (checked before zeroconf, which leaks its
    socket when it fails to start on a missing interface)."""
    for address in addresses:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((address, 0))
            except OSError:
                continue
            return True
    return False

"""VRChat's own OSC input, found through its OSCQuery advertisement (mDNS `_osc._udp`).

VRChat announces `VRChat-Client-XXXXXX._osc._udp.local.` with the UDP port it listens on; a target
with `auto_port` sends there instead of assuming 9000.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from zeroconf import ServiceBrowser, ServiceStateChange, Zeroconf

logger = logging.getLogger(__name__)

OSC_UDP_SERVICE = "_osc._udp.local."
VRCHAT_NAME_PREFIX = "VRChat-Client-"
RESOLVE_TIMEOUT_MS = 1500


@dataclass(frozen=True, slots=True)
class FoundOscService:
    name: str
    host: str
    osc_port: int


class VrchatOscFinder:
    """Browses `_osc._udp` for VRChat clients; `found()` is the most recent one still announced."""

    def __init__(self, name_prefix: str = VRCHAT_NAME_PREFIX) -> None:
        self.name_prefix = name_prefix
        self._lock = threading.Lock()
        self._services: dict[str, FoundOscService] = {}
        self._zeroconf: Zeroconf | None = None
        self._browser: ServiceBrowser | None = None
        self.error: str | None = None

    def start(self) -> None:
        try:
            self._zeroconf = Zeroconf()
            self._browser = ServiceBrowser(self._zeroconf, OSC_UDP_SERVICE, handlers=[self._on_change])
        except OSError as exc:  # no multicast-capable interface
            self.error = f"mDNS browsing unavailable: {exc}"
            logger.warning("%s", self.error)

    def _on_change(self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if not name.startswith(self.name_prefix):
            return
        if state_change is ServiceStateChange.Removed:
            with self._lock:
                self._services.pop(name, None)
            return
        info = zeroconf.get_service_info(service_type, name, timeout=RESOLVE_TIMEOUT_MS)
        if info is None or not info.port:
            return
        addresses = info.parsed_addresses()
        found = FoundOscService(name, addresses[0] if addresses else "127.0.0.1", int(info.port))
        with self._lock:
            # Re-insert so the latest announcement is last.
            self._services.pop(name, None)
            self._services[name] = found
        logger.info("found %s: OSC input at %s:%d", name, found.host, found.osc_port)

    def found(self) -> FoundOscService | None:
        with self._lock:
            return next(reversed(self._services.values()), None)

    def all(self) -> list[FoundOscService]:
        with self._lock:
            return list(self._services.values())

    def close(self) -> None:
        if self._browser is not None:
            self._browser.cancel()
        if self._zeroconf is not None:
            self._zeroconf.close()
        self._browser = self._zeroconf = None


def finder_while(finder: VrchatOscFinder | None, wanted: bool) -> VrchatOscFinder | None:
    """The finder to keep: `finder` itself, a new one started when wanted and none runs, or None once it
    is no longer wanted (then it is closed)."""
    if wanted and finder is None:
        finder = VrchatOscFinder()
        finder.start()
    elif not wanted and finder is not None:
        finder.close()
        finder = None
    return finder

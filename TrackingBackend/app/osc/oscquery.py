"""OSCQuery: advertise our inbound OSC listener so VRChat sends to our own port (no port sharing).

A small HTTP server (standard library, one thread) answers the OSCQuery host-info (`/?HOST_INFO`) and
the namespace of our inbound addresses; zeroconf announces `_oscjson._tcp` (the HTTP port) and
`_osc._udp` (the UDP listener's port) on mDNS.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from zeroconf import ServiceInfo, Zeroconf

logger = logging.getLogger(__name__)

OSCJSON_SERVICE = "_oscjson._tcp.local."
OSC_UDP_SERVICE = "_osc._udp.local."
ACCESS_WRITE_ONLY = 2  # OSCQuery ACCESS: 0 none, 1 read, 2 write, 3 both
EXTENSIONS = {"ACCESS": True, "CLIPMODE": False, "RANGE": False, "TYPE": True, "VALUE": False}


def namespace_tree(addresses: dict[str, str]) -> dict[str, Any]:
    """The OSCQuery namespace (root node) of `{address: description}`; leaves take a bool ("T")."""
    root: dict[str, Any] = {"DESCRIPTION": "ETVR Backend", "FULL_PATH": "/", "ACCESS": 0, "CONTENTS": {}}
    for address, description in sorted(addresses.items()):
        node = root
        parts = [p for p in address.split("/") if p]
        for depth, part in enumerate(parts):
            contents = node.setdefault("CONTENTS", {})
            path = "/" + "/".join(parts[: depth + 1])
            node = contents.setdefault(part, {"FULL_PATH": path, "ACCESS": 0})
        node.update(TYPE="T", ACCESS=ACCESS_WRITE_ONLY, DESCRIPTION=description)
        node.pop("CONTENTS", None)
    return root


def find_node(root: dict[str, Any], path: str) -> dict[str, Any] | None:
    node: dict[str, Any] | None = root
    for part in (p for p in path.split("/") if p):
        node = (node or {}).get("CONTENTS", {}).get(part)
        if node is None:
            return None
    return node


def host_info(name: str, osc_ip: str, osc_port: int) -> dict[str, Any]:
    return {
        "NAME": name,
        "OSC_IP": osc_ip,
        "OSC_PORT": osc_port,
        "OSC_TRANSPORT": "UDP",
        "EXTENSIONS": EXTENSIONS,
    }


class _Handler(BaseHTTPRequestHandler):
    server: _OscQueryHttpServer

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.query == "HOST_INFO":
            body: dict[str, Any] | None = self.server.host_info
        else:
            body = find_node(self.server.namespace, url.path)
        if body is None:
            self.send_error(404, "no such OSC node")
            return
        payload = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("oscquery: " + format, *args)


class _OscQueryHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    host_info: dict[str, Any]
    namespace: dict[str, Any]


class OscQueryService:
    """HTTP answers + mDNS announcements for one UDP listener; `start()` may raise OSError."""

    def __init__(self, osc_port: int, addresses: dict[str, str], host: str = "127.0.0.1", name: str = "") -> None:
        self.name = name or f"ETVR-Backend-{os.getpid()}"
        self.host = host
        self.osc_port = osc_port
        self.addresses = addresses
        self.http_port = 0
        self.advertised = False
        self.error: str | None = None
        self._http: _OscQueryHttpServer | None = None
        self._thread: threading.Thread | None = None
        self._zeroconf: Zeroconf | None = None
        self._infos: list[ServiceInfo] = []

    def start(self) -> None:
        self._http = _OscQueryHttpServer((self.host, 0), _Handler)
        self.http_port = self._http.server_address[1]
        self._http.host_info = host_info(self.name, self.host, self.osc_port)
        self._http.namespace = namespace_tree(self.addresses)
        self._thread = threading.Thread(target=self._http.serve_forever, name="oscquery-http", daemon=True)
        self._thread.start()
        try:
            self._advertise()
        except OSError as exc:  # no multicast: the HTTP side still answers, VRChat just cannot find us
            self.error = f"mDNS advertisement failed: {exc}"
            logger.warning("OSCQuery: %s", self.error)

    def set_addresses(self, addresses: dict[str, str]) -> None:
        """Answer a new namespace from now on (the advertisement stays)."""
        self.addresses = addresses
        if self._http is not None:
            self._http.namespace = namespace_tree(addresses)

    def _advertise(self) -> None:
        address = socket.inet_aton(self.host)
        self._infos = [
            ServiceInfo(
                OSCJSON_SERVICE,
                f"{self.name}.{OSCJSON_SERVICE}",
                addresses=[address],
                port=self.http_port,
                server=f"{self.name}.local.",
            ),
            ServiceInfo(
                OSC_UDP_SERVICE,
                f"{self.name}.{OSC_UDP_SERVICE}",
                addresses=[address],
                port=self.osc_port,
                server=f"{self.name}.local.",
            ),
        ]
        self._zeroconf = Zeroconf()
        for info in self._infos:
            self._zeroconf.register_service(info, allow_name_change=True)
        self.advertised = True
        logger.info(
            "OSCQuery: advertised %s (HTTP %s:%d, OSC UDP %d)", self.name, self.host, self.http_port, self.osc_port
        )

    def close(self) -> None:
        if self._zeroconf is not None:
            for info in self._infos:
                try:
                    self._zeroconf.unregister_service(info)
                except Exception as exc:  # the daemon may already be going down
                    logger.debug("OSCQuery: unregister %s: %s", info.name, exc)
            self._zeroconf.close()
            self._zeroconf = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        self.advertised = False

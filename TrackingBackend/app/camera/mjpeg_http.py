"""OpenIris Wi-Fi camera: our own streaming MJPEG-over-HTTP reader on a plain socket.

Not OpenCV/FFmpeg, so that timeouts, stalls, reconnects and the backlog are ours to control:
- `read` drains what the socket has (up to one receive buffer, kept small with SO_RCVBUF), parses it once,
  jumping over parts that a later complete part makes stale without parsing them, decodes only the newest
  complete frame and counts the older ones in `dropped_stale` (for gaze the freshest frame matters, never
  completeness). It hands out at most `max_fps` frames a second (default 240), so a flooding sender is
  slowed by TCP instead of by our CPU.
- No byte for `stall_timeout_s`, or bytes but no usable frame for `no_frame_timeout_s`, raises SourceError,
  and so do a refused connection, a closed stream and a broken HTTP framing: the caller reconnects.
- `*.local` names the OS resolver cannot resolve are looked up over mDNS (zeroconf) and cached.
Counters: every part that arrived counts as `received`; it is then `decoded`, `corrupt` or `dropped_stale`.
"""

from __future__ import annotations

import ipaddress
import logging
import select
import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from app.camera.base import CapturedFrame, SourceCounters, SourceError
from app.camera.discovery import interfaces_present
from app.camera.jpeg import decode_gray
from app.camera.mjpeg_framing import (
    DEFAULT_MAX_PART_BYTES,
    MAX_RESPONSE_HEAD_BYTES,
    ChunkedDecoder,
    MjpegPart,
    MultipartJpegParser,
    StreamFormatError,
    find_head_end,
    parse_response_head,
)

logger = logging.getLogger(__name__)

RECV_BYTES = 64 * 1024
# The kernel's receive buffer for the stream (0 = the OS default, which on Linux grows to megabytes). A
# small one keeps a flooding sender's backlog small (TCP makes it wait) while holding ~1/8 s of a real
# camera's 60-90 fps of 5-15 kB JPEGs.
DEFAULT_RECV_BUFFER_BYTES = 128 * 1024
DRAIN_RECV_BYTES = 256 * 1024  # fewer system calls while a backlog is drained
# One read drains at most one kernel receive buffer (as the kernel reports its size; at least this) before
# handing out a frame: what is left after that arrived while we were reading, and a sender faster than we
# can copy cannot keep `read` busy forever. Draining more only buys freshness from a sender we cannot keep
# up with anyway.
MIN_DRAIN_BYTES = 256 * 1024
MDNS_CACHE_TTL_S = 600.0
# Real cameras send 60-90 fps. Above this rate `read` waits and lets TCP flow control slow the sender, so a
# flooding stream cannot make the camera process spin.
DEFAULT_MAX_FPS = 240.0


@dataclass(frozen=True, slots=True)
class _CachedAddress:
    address: str
    expires_at: float


_mdns_cache: dict[str, _CachedAddress] = {}
_mdns_cache_lock = threading.Lock()


def forget_resolved_host(host: str) -> None:
    """Drop a cached mDNS answer (the camera may have a new DHCP address)."""
    with _mdns_cache_lock:
        _mdns_cache.pop(host.lower().rstrip("."), None)


def _os_resolve(host: str, port: int, timeout_s: float) -> str | None:
    """getaddrinfo in a daemon thread, so a slow system resolver cannot hang `open` past its timeout."""
    result: list[str] = []

    def lookup() -> None:
        try:
            infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return
        # Prefer IPv4: the cameras and most home networks are IPv4 first.
        infos.sort(key=lambda info: info[0] != socket.AF_INET)
        if infos:
            result.append(str(infos[0][4][0]))

    worker = threading.Thread(target=lookup, name=f"resolve:{host}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    return result[0] if result else None


def _mdns_resolve(host: str, timeout_s: float, interfaces: list[str] | None) -> str | None:
    if interfaces and not interfaces_present(interfaces):
        logger.warning("mDNS is unavailable for resolving %s: interfaces %s are not on this host", host, interfaces)
        return None
    try:
        from zeroconf import AddressResolverIPv4, IPVersion, Zeroconf  # type: ignore[attr-defined]

        zc = Zeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only) if interfaces else Zeroconf()
    except Exception as exc:  # no multicast-capable interface, sandbox, firewall...
        logger.warning("mDNS is unavailable for resolving %s: %s", host, exc)
        return None
    try:
        resolver = AddressResolverIPv4(host.rstrip(".") + ".")
        if resolver.request(zc, int(timeout_s * 1000)):
            addresses: list[str] = resolver.parsed_addresses()
            return addresses[0] if addresses else None
        return None
    except Exception as exc:
        logger.warning("mDNS lookup of %s failed: %s", host, exc)
        return None
    finally:
        zc.close()


def resolve_host(host: str, port: int, *, timeout_s: float = 2.0, mdns_interfaces: list[str] | None = None) -> str:
    """An IP address for `host`: literal, system resolver, then mDNS for `*.local` (cached). SourceError if none."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        pass
    key = host.lower().rstrip(".")
    now = time.monotonic()
    with _mdns_cache_lock:
        cached = _mdns_cache.get(key)
    if cached is not None and cached.expires_at > now:
        return cached.address
    address = _os_resolve(host, port, timeout_s)
    if address is not None:
        return address
    if key.endswith(".local"):
        address = _mdns_resolve(key, timeout_s, mdns_interfaces)
        if address is not None:
            with _mdns_cache_lock:
                _mdns_cache[key] = _CachedAddress(address, time.monotonic() + MDNS_CACHE_TTL_S)
            logger.info("resolved %s over mDNS to %s", host, address)
            return address
        raise SourceError(f"camera host {host!r} not found (system resolver and mDNS both failed)")
    raise SourceError(f"camera host {host!r} not found")


class MjpegHttpSource:
    """Frames from an MJPEG stream such as `http://openiristracker.local/` (FrameSource)."""

    def __init__(
        self,
        url: str,
        *,
        connect_timeout_s: float = 3.0,
        stall_timeout_s: float = 2.0,
        no_frame_timeout_s: float = 5.0,
        max_fps: float = DEFAULT_MAX_FPS,
        max_part_bytes: int = DEFAULT_MAX_PART_BYTES,
        recv_buffer_bytes: int = DEFAULT_RECV_BUFFER_BYTES,
        mdns_interfaces: list[str] | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme.lower() != "http" or not parts.hostname:
            raise SourceError(f"unsupported stream URL {url!r}: only http://host[:port][/path] is read")
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or 80
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.connect_timeout_s = connect_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.no_frame_timeout_s = no_frame_timeout_s
        self.max_fps = max_fps
        self._next_delivery_ts = 0.0  # the max_fps schedule: when the next frame may be handed out
        self.max_part_bytes = max_part_bytes
        self.recv_buffer_bytes = recv_buffer_bytes
        self._max_drain_bytes = MIN_DRAIN_BYTES
        self.mdns_interfaces = mdns_interfaces
        self.counters = SourceCounters()
        self.waits_for_reader = False  # a camera keeps its own time
        self.dropped_stale = 0  # complete frames skipped because a newer one was already there
        self.last_device_ts_s: float | None = None  # X-Timestamp of the last delivered frame (camera clock)
        self._sock: socket.socket | None = None
        self._chunked: ChunkedDecoder | None = None
        self._parser: MultipartJpegParser | None = None
        self._parser_corrupt_seen = 0
        self._parser_stale_seen = 0
        self._last_rx_ts = 0.0
        self._last_frame_ts = 0.0
        self._pending_error: SourceError | None = None
        self._early_parts: list[tuple[MjpegPart, float]] = []  # frames that came with the HTTP head

    def open(self) -> None:
        self.close()
        address = resolve_host(
            self.host, self.port, timeout_s=self.connect_timeout_s, mdns_interfaces=self.mdns_interfaces
        )
        try:
            sock = self._connect(address)
        except OSError as exc:
            forget_resolved_host(self.host)
            raise SourceError(f"cannot connect to camera at {self.url} ({address}): {exc}") from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            host_header = self.host if self.port == 80 else f"{self.host}:{self.port}"
            request = (
                f"GET {self.path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: etvr-backend\r\n"
                "Accept: multipart/x-mixed-replace, image/jpeg\r\nConnection: close\r\n\r\n"
            )
            sock.sendall(request.encode("ascii", "replace"))
            body_start = self._read_response_head(sock)
        except OSError as exc:
            sock.close()
            raise SourceError(f"camera at {self.url} did not answer: {exc}") from exc
        except SourceError:
            sock.close()
            raise
        self._sock = sock
        self._max_drain_bytes = max(MIN_DRAIN_BYTES, sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
        now = time.monotonic()
        self._last_rx_ts = now
        self._last_frame_ts = now
        if body_start:
            try:
                self._early_parts = [(part, now) for part in self._feed(body_start)]
            except SourceError:
                self.close()
                raise

    def _connect(self, address: str) -> socket.socket:
        family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if self.recv_buffer_bytes > 0:
                # Before connect, so the advertised window is small from the start.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.recv_buffer_bytes)
            sock.settimeout(self.connect_timeout_s)
            sock.connect((address, self.port))
        except OSError:
            sock.close()
            raise
        return sock

    def _read_response_head(self, sock: socket.socket) -> bytes:
        """Read and check the HTTP head; returns the body bytes that came with it."""
        deadline = time.monotonic() + self.connect_timeout_s
        buffer = b""
        while (head_end := find_head_end(buffer)) < 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SourceError(f"camera at {self.url} sent no HTTP response within {self.connect_timeout_s} s")
            if len(buffer) > MAX_RESPONSE_HEAD_BYTES:
                raise SourceError(f"camera at {self.url} sent an oversized HTTP head")
            sock.settimeout(remaining)
            try:
                data = sock.recv(RECV_BYTES)
            except TimeoutError:
                continue
            if not data:
                raise SourceError(f"camera at {self.url} closed the connection before answering")
            buffer += data
        try:
            head = parse_response_head(buffer[: head_end - 4])
        except StreamFormatError as exc:
            raise SourceError(f"camera at {self.url}: {exc}") from exc
        if head.status != 200:
            raise SourceError(f"camera at {self.url} answered HTTP {head.status} {head.reason}".rstrip())
        content_type = head.headers.get("content-type", "")
        if not content_type.lower().startswith("multipart/"):
            raise SourceError(f"camera at {self.url} is not an MJPEG stream (Content-Type {content_type!r})")
        self._chunked = ChunkedDecoder() if head.is_chunked else None
        self._parser = MultipartJpegParser(head.boundary, self.max_part_bytes)
        self._parser_corrupt_seen = 0
        self._parser_stale_seen = 0
        return buffer[head_end:]

    def _feed(self, data: bytes) -> list[MjpegPart]:
        assert self._parser is not None
        if self._chunked is not None:
            try:
                data = self._chunked.feed(data)
            except StreamFormatError as exc:
                raise SourceError(f"camera at {self.url}: {exc}") from exc
        parser = self._parser
        parts = parser.feed(data, newest_only=True)
        new_corrupt = parser.counters.corrupt - self._parser_corrupt_seen
        new_stale = parser.counters.stale - self._parser_stale_seen
        self._parser_corrupt_seen = parser.counters.corrupt
        self._parser_stale_seen = parser.counters.stale
        self.counters.received += len(parts) + new_corrupt + new_stale
        self.counters.corrupt += new_corrupt
        self.dropped_stale += new_stale
        if self._chunked is not None and self._chunked.finished:
            raise SourceError(f"camera at {self.url} ended the stream")
        return parts

    def _recv(self, sock: socket.socket, timeout_s: float) -> bytes | None:
        """Bytes from the socket within `timeout_s`, None on timeout; SourceError when the peer is gone."""
        sock.settimeout(max(timeout_s, 0.0001))
        return self._take(sock, RECV_BYTES)

    def _take(self, sock: socket.socket, size: int) -> bytes | None:
        """One recv in the socket's current mode: None when nothing came (timed out, or a non-blocking socket
        is empty); SourceError when the peer is gone."""
        try:
            data = sock.recv(size)
        except (TimeoutError, BlockingIOError):
            return None
        except OSError as exc:
            raise SourceError(f"camera at {self.url} connection lost: {exc}") from exc
        if not data:
            raise SourceError(f"camera at {self.url} closed the stream")
        return data

    def read(self, timeout_s: float) -> CapturedFrame | None:
        sock = self._sock
        if sock is None:
            raise SourceError(f"camera at {self.url} is not open")
        if self._pending_error is not None:
            raise self._pending_error
        if self.max_fps > 0:
            wait_s = self._next_delivery_ts - time.monotonic()
            if wait_s > timeout_s:
                time.sleep(max(0.0, timeout_s))
                return None
            if wait_s > 0:
                time.sleep(wait_s)
                timeout_s -= wait_s
        if self._early_parts:
            early, self._early_parts = self._early_parts, []
            if select.select([sock], [], [], 0)[0]:
                try:
                    data = self._recv(sock, 0.0)
                except SourceError as exc:
                    self._pending_error = exc
                else:
                    if data is not None:
                        self._drain(sock, data, early)
            frame = self._decode_newest(early)
            if frame is not None:
                return frame
        deadline = time.monotonic() + timeout_s
        while True:
            now = time.monotonic()
            stall_left_s = self._last_rx_ts + self.stall_timeout_s - now
            data = self._recv(sock, max(0.0, min(deadline - now, stall_left_s)))
            now = time.monotonic()
            if data is None:
                if now - self._last_rx_ts >= self.stall_timeout_s:
                    raise SourceError(f"camera at {self.url} stalled: no data for {self.stall_timeout_s:g} s")
            else:
                frame = self._decode_newest(self._drain(sock, data))
                if frame is not None:
                    return frame
            if now - self._last_frame_ts > self.no_frame_timeout_s:
                raise SourceError(f"camera at {self.url} sent no usable frame for {self.no_frame_timeout_s:g} s")
            if now >= deadline:
                return None

    def _drain(
        self, sock: socket.socket, first: bytes, arrived: list[tuple[MjpegPart, float]] | None = None
    ) -> list[tuple[MjpegPart, float]]:
        """Parse `first` and whatever else the socket already holds into `arrived`, stamped when the drain ends.

        Non-blocking reads until the socket is empty (one system call each, no select), then one parse of
        it all, in which the parser jumps over parts that a later complete part makes stale: a backlog
        costs little more than its copy, and at most two parts are parsed per read.
        """
        arrived = [] if arrived is None else arrived
        chunks = [first]
        drained = len(first)
        broken: SourceError | None = None
        sock.settimeout(0.0)
        while drained < self._max_drain_bytes:
            try:
                data = self._take(sock, DRAIN_RECV_BYTES)
            except SourceError as exc:
                broken = exc
                break
            if data is None:
                break
            chunks.append(data)
            drained += len(data)
        rx_ts = time.monotonic()
        self._last_rx_ts = rx_ts
        try:
            arrived += [(part, rx_ts) for part in self._feed(first if len(chunks) == 1 else b"".join(chunks))]
        except SourceError as exc:
            broken = exc
        if broken is not None:
            if not arrived:
                raise broken
            # Hand out what arrived before the stream broke; the next read reports the break.
            self._pending_error = broken
        return arrived

    def _decode_newest(self, arrived: list[tuple[MjpegPart, float]]) -> CapturedFrame | None:
        for index in range(len(arrived) - 1, -1, -1):
            part, rx_ts = arrived[index]
            gray = decode_gray(part.jpeg)
            if gray is None:
                self.counters.corrupt += 1
                continue
            self.counters.decoded += 1
            self.dropped_stale += index
            self.last_device_ts_s = part.device_ts_s
            self._last_frame_ts = rx_ts
            if self.max_fps > 0:
                # On a schedule, so oversleeping and decoding do not lower the rate below max_fps; a frame
                # later than its slot restarts the schedule instead of being followed by a burst.
                self._next_delivery_ts = max(self._next_delivery_ts + 1.0 / self.max_fps, time.monotonic())
            return CapturedFrame(gray=gray, capture_ts=rx_ts)
        return None

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
        self._chunked = None
        self._parser = None
        self._pending_error = None
        self._early_parts = []

    def __repr__(self) -> str:
        return f"MjpegHttpSource({self.url!r})"

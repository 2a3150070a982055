"""A fake OpenIris Wi-Fi camera: an MJPEG-over-HTTP server on 127.0.0.1, well-behaved or misbehaving.

By default it answers like the firmware's esp_http_server: `HTTP/1.1 200 OK`,
`Content-Type: multipart/x-mixed-replace;boundary=...`, `Transfer-Encoding: chunked`, and each frame as three
chunks (`\\r\\n--<boundary>\\r\\n`, the part headers with Content-Length and X-Timestamp, the JPEG).

    with FakeOpenIrisHttpServer(make_jpegs(10), fps=60) as camera:
        source = MjpegHttpSource(camera.url)

Faults (`StreamFaults`) can be changed while it runs with `camera.faults = StreamFaults(...)`; new
connections and the next frame of running ones pick them up. `stop()` then `start()` brings it back on the
same port, to test reconnects. Every connection gets consecutive frame indices from one shared counter.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType

BOUNDARY = "123456789000000000000987654321"  # the one OpenIris uses


@dataclass(frozen=True, slots=True)
class StreamFaults:
    chunked: bool = True  # esp_http_server always chunks; False = a raw multipart body (HTTP/1.0 style)
    content_length: bool = True  # send Content-Length in each part
    timestamp: bool = True  # send X-Timestamp in each part
    status: int = 200  # HTTP status of the answer
    silent: bool = False  # accept the connection but never answer
    stall_after_frames: int | None = None  # stop sending (socket left open) after this many frames
    close_after_frames: int | None = None  # close the connection after this many frames
    corrupt_every: int = 0  # every Nth frame keeps its JPEG markers but its data is zeroed: it won't decode
    wrong_length_every: int = 0  # every Nth frame announces a Content-Length off by -500/+500 (alternating)
    truncate_every: int = 0  # every Nth frame is cut to half its length (Content-Length still the full one)


FrameSupplier = Sequence[bytes] | Callable[[int], bytes]


class FakeOpenIrisHttpServer:
    """Serve `frames` (a sequence, cycled, or a callable index -> JPEG) at `fps` (0 = as fast as possible)."""

    def __init__(
        self,
        frames: Iterable[bytes] | Callable[[int], bytes],
        fps: float = 60.0,
        *,
        faults: StreamFaults | None = None,
        port: int = 0,
        path: str = "/",
    ) -> None:
        self._frames: FrameSupplier = frames if callable(frames) or isinstance(frames, Sequence) else list(frames)
        self.fps = fps
        self.faults = faults or StreamFaults()
        self.port = port
        self.path = path
        self.frames_sent = 0  # across all connections; also the next frame's index
        self.connections = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._clients: list[socket.socket] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def start(self) -> FakeOpenIrisHttpServer:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(8)
        listener.settimeout(0.05)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._stop.clear()
        self._spawn(self._accept_loop, "fake-openiris-accept")
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            client.close()
        for thread in self._threads:
            thread.join(timeout=2.0)
        self._threads = []

    def __enter__(self) -> FakeOpenIrisHttpServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def frame(self, index: int) -> bytes:
        if callable(self._frames):
            return self._frames(index)
        return self._frames[index % len(self._frames)]

    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._clients.append(client)
                self.connections += 1
            self._spawn(self._serve, "fake-openiris-client", client)

    def _serve(self, client: socket.socket) -> None:
        try:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if not self._read_request(client):
                return
            faults = self.faults
            if faults.silent:
                self._stop.wait()
                return
            if faults.status != 200:
                client.sendall(f"HTTP/1.1 {faults.status} Error\r\nContent-Length: 0\r\n\r\n".encode())
                return
            self._stream(client)
        except OSError:
            pass  # the reader went away: that is what readers do
        finally:
            client.close()

    def _read_request(self, client: socket.socket) -> bool:
        client.settimeout(2.0)
        request = b""
        while b"\r\n\r\n" not in request:
            data = client.recv(4096)
            if not data:
                return False
            request += data
        return True

    def _stream(self, client: socket.socket) -> None:
        faults = self.faults
        head = [
            "HTTP/1.1 200 OK",
            f"Content-Type: multipart/x-mixed-replace;boundary={BOUNDARY}",
            "Access-Control-Allow-Origin: *",
            "X-Framerate: 60",
        ]
        if faults.chunked:
            head.append("Transfer-Encoding: chunked")
        client.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        sent_here = 0
        next_due = time.monotonic()
        while not self._stop.is_set():
            faults = self.faults
            if faults.close_after_frames is not None and sent_here >= faults.close_after_frames:
                return
            if faults.stall_after_frames is not None and sent_here >= faults.stall_after_frames:
                self._stop.wait(0.05)
                continue
            if self.fps > 0:
                delay = next_due - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
                next_due = max(next_due + 1.0 / self.fps, time.monotonic() - 1.0 / self.fps)
            with self._lock:
                index = self.frames_sent
                self.frames_sent += 1
            for piece in self._frame_pieces(index, faults):
                client.sendall(_chunk(piece) if faults.chunked else piece)
            sent_here += 1

    def _frame_pieces(self, index: int, faults: StreamFaults) -> list[bytes]:
        jpeg = self.frame(index)
        length = len(jpeg)
        if faults.corrupt_every and index % faults.corrupt_every == faults.corrupt_every - 1:
            jpeg = jpeg[:2] + bytes(len(jpeg) - 4) + jpeg[-2:]
        if faults.wrong_length_every and index % faults.wrong_length_every == faults.wrong_length_every - 1:
            length += 500 if (index // faults.wrong_length_every) % 2 else -500
        if faults.truncate_every and index % faults.truncate_every == faults.truncate_every - 1:
            jpeg = jpeg[: len(jpeg) // 2]
        headers = ["Content-Type: image/jpeg"]
        if faults.content_length:
            headers.append(f"Content-Length: {length}")
        if faults.timestamp:
            now = time.time()
            headers.append(f"X-Timestamp: {int(now)}.{int((now % 1) * 1e6):06d}")
        return [f"\r\n--{BOUNDARY}\r\n".encode(), ("\r\n".join(headers) + "\r\n\r\n").encode(), jpeg]


def _chunk(data: bytes) -> bytes:
    return f"{len(data):X}\r\n".encode() + data + b"\r\n"


class MdnsAdvertisement:
    """Announce a fake camera as `_openiristracker._tcp` with host `<name>.local` -> 127.0.0.1.

    Only on the loopback interface, so tests never multicast onto a real network. Resolvers and browsers in
    the same test must be given `interfaces=["127.0.0.1"]` too.
    """

    SERVICE_TYPE = "_openiristracker._tcp.local."

    def __init__(self, name: str, stream_port: int, api_port: int = 81) -> None:
        self.name = name
        self.host = f"{name}.local"
        self.stream_port = stream_port
        self.api_port = api_port
        self._zc: object | None = None
        self._info: object | None = None

    def __enter__(self) -> MdnsAdvertisement:
        from zeroconf import IPVersion, ServiceInfo, Zeroconf

        zc = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
        info = ServiceInfo(
            self.SERVICE_TYPE,
            f"{self.name}.{self.SERVICE_TYPE}",
            addresses=[socket.inet_aton("127.0.0.1")],
            port=self.stream_port,
            properties={"stream_port": str(self.stream_port), "api_port": str(self.api_port)},
            server=f"{self.host}.",
        )
        # A cooperating responder skips the 750 ms name probe: the random name cannot collide.
        zc.register_service(info, cooperating_responders=True)
        self._zc, self._info = zc, info
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        from zeroconf import ServiceInfo, Zeroconf

        if isinstance(self._zc, Zeroconf) and isinstance(self._info, ServiceInfo):
            self._zc.unregister_service(self._info)
            self._zc.close()

"""Access control: an optional bearer token, required whenever the service listens beyond loopback.

The token is accepted as `Authorization: Bearer <token>`, as `?token=<token>` for what a browser
cannot add headers to (the dashboard's first load, `<img>` MJPEG feeds, WebSockets), or as the
HttpOnly, same-site cookie a `?token=` answer sets (so `/docs` can fetch its schema). It is compared in
constant time and never logged.
"""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import parse_qs

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}
COOKIE_NAME = "etvr_token"


def is_loopback_host(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _presented_token(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            header: str = bytes(value).decode("latin-1")
            scheme, _, credentials = header.partition(" ")
            if scheme.lower() == "bearer":
                return credentials.strip()
        if name == b"cookie":
            for part in bytes(value).decode("latin-1").split(";"):
                key, _, cookie_value = part.strip().partition("=")
                if key == COOKIE_NAME:
                    return cookie_value
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    values = query.get("token")
    return str(values[0]) if values else None


class TokenAuth:
    """Rejects HTTP requests (401) and WebSocket handshakes (close 1008) without the right token."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    def _allowed(self, scope: Scope) -> bool:
        presented = _presented_token(scope)
        return presented is not None and hmac.compare_digest(presented.encode(), self._token)

    def _setting_cookie(self, send: Send) -> Send:
        cookie = f"{COOKIE_NAME}={self._token.decode()}; HttpOnly; SameSite=Strict; Path=/".encode("latin-1")

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
            await send(message)

        return send_with_cookie

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if self._allowed(scope):
            if scope["type"] == "http" and b"token=" in scope.get("query_string", b""):
                # A page opened with ?token= keeps working for what it loads next (/docs' schema, feeds).
                await self.app(scope, receive, self._setting_cookie(send))
            else:
                await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "missing or wrong token"})
            return
        response = JSONResponse(
            {"detail": "missing or wrong token (Authorization: Bearer <token>, or ?token=)"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)

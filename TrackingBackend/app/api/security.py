"""Access control: an optional bearer token, required whenever the service listens beyond loopback.

The token is accepted as `Authorization: Bearer <token>`, or as `?token=<token>` for what a browser
cannot add headers to (the dashboard's first load, `<img>` MJPEG feeds, WebSockets). It is compared in
constant time and never logged.
"""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import parse_qs

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self._allowed(scope):
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

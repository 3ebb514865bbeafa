"""The API key: `Authorization: Bearer <key>` on every route but the probes and the API docs.

Checked from the headers alone, in ASGI middleware that runs before the body is read or parsed:
a caller without the key costs a header lookup, never the parsing of a 2 MB body.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from semsearch.service.errors import Unauthorized, send_error

# Probes and the API's description need no key: they reveal the API's shape, nothing stored.
OPEN_PATHS = frozenset(
    {"/health", "/ready", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)


class ApiKeyGate:
    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app = app
        # Settings keep the key to visible ASCII, so its bytes are what a client sends.
        self.expected = api_key.encode("ascii") if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.expected is None
            or scope["type"] != "http"
            or scope.get("path", "") in OPEN_PATHS
            or self._authorized(scope)
        ):
            await self.app(scope, receive, send)
            return
        await send_error(
            scope,
            send,
            Unauthorized("missing or wrong API key: send `Authorization: Bearer <key>`"),
        )

    def _authorized(self, scope: Scope) -> bool:
        assert self.expected is not None
        header = b""
        for name, value in scope.get("headers") or ():
            if name == b"authorization":
                header = value
                break
        scheme, _, given = header.partition(b" ")
        # compare_digest: the time taken must not reveal how much of the key matched.
        return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.expected)

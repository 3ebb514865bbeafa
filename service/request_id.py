"""A request id on every request: taken from a well-formed `x-request-id` header or made here.

It goes back in the `x-request-id` response header of every answer and into every error body, and
the log lines of failed requests carry it, so an operator can find what a user reports.
"""

from __future__ import annotations

import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-request-id"
SCOPE_KEY = "semsearch.request_id"
# A caller's own id is kept only if it is short and plain: it ends up in logs and headers.
_ACCEPTED = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


def request_id(scope: Scope) -> str:
    """This request's id ("" outside a request that went through the middleware)."""
    return scope.get(SCOPE_KEY, "")


class RequestId:
    """Plain ASGI middleware, outermost, so even a 413 from the body limit carries the id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(HEADER, b"")
        rid = given.decode() if _ACCEPTED.fullmatch(given) else uuid.uuid4().hex
        scope[SCOPE_KEY] = rid
        header = (HEADER, rid.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != HEADER]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        await self.app(scope, receive, send_with_id)

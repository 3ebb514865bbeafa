"""Limits on a request body, enforced before any route parses it: its size and how long it takes.

The size is checked on `Content-Length` when the client sends one, and on the bytes actually
received otherwise (chunked uploads), so an oversized body is refused with 413 without being
buffered. A body that trickles in (or stops one byte short) is refused with 408 once
`timeout_s` has passed since its first byte was awaited, so a slow client cannot hold memory and a
connection for ever.
"""

from __future__ import annotations

import asyncio
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from semsearch.service.errors import ApiError, PayloadTooLarge, RequestTimeout, send_error


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await send_error(scope, send, self._too_large())
            return
        received = 0
        refused = False
        body_done = False
        deadline: float | None = None

        async def refuse(error: ApiError) -> Message:
            # Answer now, then tell the app the client left so it stops reading.
            nonlocal refused
            refused = True
            await send_error(scope, send, error)
            return {"type": "http.disconnect"}

        async def limited_receive() -> Message:
            nonlocal received, body_done, deadline
            if body_done or refused:  # after the body: waiting for a disconnect is not bounded
                return await receive()
            deadline = deadline or time.monotonic() + self.timeout_s
            try:
                message = await asyncio.wait_for(receive(), deadline - time.monotonic())
            except TimeoutError:
                return await refuse(
                    RequestTimeout(
                        f"the request body did not arrive within {self.timeout_s:g} s "
                        "(SEMSEARCH_BODY_TIMEOUT_S)"
                    )
                )
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    return await refuse(self._too_large())
                body_done = not message.get("more_body", False)
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:  # after a refusal the error is the whole response
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not refused:
                raise

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"request body larger than {self.max_bytes} bytes (SEMSEARCH_MAX_BODY_BYTES)"
        )

"""Server-Sent Events, and stopping work whose client has gone away."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from semsearch.service.errors import error_body, to_api_error
from semsearch.service.request_id import request_id

log = logging.getLogger(__name__)

T = TypeVar("T")

_POLL_SECONDS = 0.25

# After this many seconds without an event, a stream sends an SSE comment line (which every SSE
# client skips), so a proxy or load balancer that cuts idle connections (nginx's default
# `proxy_read_timeout` is 60 s) keeps the stream open through a long prefill or a slow token.
KEEPALIVE_SECONDS = 15.0
KEEPALIVE = ": keep-alive\n\n"


def sse_event(data: dict[str, object] | str) -> str:
    """One SSE event; `data` is JSON-encoded unless it is already a string (OpenAI's `[DONE]`)."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {payload}\n\n"


class _SSEResponse(StreamingResponse):
    """A stream that runs `on_close` however it ends: finished, failed, or never started because
    the client left before the first byte (then the body iterator never runs its own cleanup)."""

    def __init__(self, events: AsyncIterator[str], on_close: Callable[[], None]) -> None:
        super().__init__(
            events,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


def sse_response(
    events: AsyncIterator[str], request: Request, on_close: Callable[[], None] = lambda: None
) -> StreamingResponse:
    """Stream `events`, with a keep-alive comment after each KEEPALIVE_SECONDS of silence; an
    error after the 200 went out becomes an error event (the route's envelope, with the request
    id) followed by `[DONE]`, since the status can no longer change. A client that disconnects
    ends the stream (Starlette cancels or drops it), and with it `events`, which stops the
    generation."""
    return _SSEResponse(_guarded(events, request), on_close)


async def _guarded(events: AsyncIterator[str], request: Request) -> AsyncIterator[str]:
    iterator = aiter(events)
    pending: asyncio.Future[str] | None = None
    try:
        while True:
            # The next event is awaited in a task of its own, so waiting for it can time out
            # (and send a keep-alive) without cancelling it.
            pending = asyncio.ensure_future(anext(iterator))
            while not (await asyncio.wait({pending}, timeout=KEEPALIVE_SECONDS))[0]:
                yield KEEPALIVE
            try:
                event = pending.result()
            except StopAsyncIteration:
                return
            yield event
    except Exception as exc:  # the response has started: report in-band
        error = to_api_error(exc)
        rid = request_id(request.scope)
        if error.status >= 500:
            log.error("stream failed on %s (request id %s)", request.url.path, rid, exc_info=exc)
        yield sse_event(error_body(request.url.path, error, rid))
        yield sse_event("[DONE]")
    finally:
        if pending is not None and not pending.done():
            pending.cancel()  # the client left (or the server stops) while an event was awaited


async def until_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it if the client disconnects first (non-streaming responses)."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=_POLL_SECONDS)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                raise asyncio.CancelledError("the client disconnected")
    finally:
        if not task.done():
            task.cancel()

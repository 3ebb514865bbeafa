"""One access line per request, on the `semsearch.access` logger, at INFO.

Its fields: `request_id`, `method`, `route` (the path template, `/documents/{doc_id}`, as in the
metrics), `status`, `duration_ms`, and what the work of the request counted, where it counts
anything: `batch_size` (inputs embedded), `tokens` (encoder tokens), `prompt_tokens`,
`cached_tokens` and `completion_tokens` (generation). The engines add those with `note(...)`
wherever they run in the request (a context variable holds the request's counts, so no handler has
to pass them along).
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar

from starlette.types import ASGIApp, Receive, Scope, Send

from semsearch.service.request_id import request_id
from semsearch.service.response_status import ResponseStatus

log = logging.getLogger("semsearch.access")

_counts: ContextVar[dict[str, int] | None] = ContextVar("semsearch_access_counts", default=None)


def note(**counts: int) -> None:
    """Add to this request's counts (`note(batch_size=2, tokens=14)`); outside a request, nothing.
    Added, not replaced: `/documents` embeds in pieces, `/rag` embeds and then generates."""
    current = _counts.get()
    if current is not None:
        for name, value in counts.items():
            current[name] = current.get(name, 0) + value


class AccessLog:
    """Plain ASGI middleware inside `RequestId` (whose id it reports) and outside everything that
    can refuse a request, so a 401 or a 413 gets its line too. A stream's line comes when it ends,
    with the tokens it generated."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        counts: dict[str, int] = {}
        token = _counts.set(counts)
        response = ResponseStatus(send)
        try:
            async with response.watching():
                await self.app(scope, receive, response.send)
        finally:
            status = response.value
            _counts.reset(token)
            ms = (time.perf_counter() - started) * 1000
            route = getattr(scope.get("route"), "path", "unmatched")
            rid = request_id(scope)
            shown = "".join(f" {name}={value}" for name, value in counts.items())
            log.info(
                "%s %s %d %.1fms id=%s%s",
                scope["method"], route, status, ms, rid, shown,
                extra={"request_id": rid, "method": scope["method"], "route": route,
                       "status": status, "duration_ms": round(ms, 3), **counts},
            )  # fmt: skip

"""The status a request was answered with, as the middlewares that log and count requests see it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.types import Message, Send

CLIENT_CLOSED = 499  # a request whose client left before its answer began (nginx's number)


class ResponseStatus:
    """Wraps a request's `send`: `value` is the status of the answer once it starts, 500 while
    none has (what the server answers when the app fails first), 499 if the client left first."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.value = 500

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.value = message["status"]
        await self._send(message)

    @asynccontextmanager
    async def watching(self) -> AsyncIterator[None]:
        """Around the app's call: a cancellation before any answer is the client's leaving."""
        try:
            yield
        except asyncio.CancelledError:
            if self.value == 500:
                self.value = CLIENT_CLOSED
            raise

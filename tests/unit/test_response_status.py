"""The status the access log and the metrics record: the answer's, 500 when the app failed before
answering, 499 when the client left first."""

from __future__ import annotations

import asyncio

import pytest

from semsearch.service.response_status import CLIENT_CLOSED, ResponseStatus


async def _run(app) -> int:
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    response = ResponseStatus(send)
    try:
        async with response.watching():
            await app(response.send)
    except (asyncio.CancelledError, RuntimeError):
        pass
    return response.value


async def _answers(send) -> None:
    await send({"type": "http.response.start", "status": 201, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def _left_before_answering(send) -> None:
    raise asyncio.CancelledError


async def _left_mid_stream(send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    raise asyncio.CancelledError


async def _failed(send) -> None:
    raise RuntimeError("a bug")


@pytest.mark.parametrize(
    ("app", "status"),
    [
        (_answers, 201),
        (_left_before_answering, CLIENT_CLOSED),
        (_left_mid_stream, 200),
        (_failed, 500),
    ],
)
def test_the_recorded_status(app, status):
    assert asyncio.run(_run(app)) == status

"""Every Server-Sent Events route (`/generate`, `/v1/completions`, `/v1/chat/completions`, `/rag`)
as a client reads it: an error after the 200 is one event in the route's envelope and then
`data: [DONE]`; a silent stretch (a long prefill) carries `: keep-alive` comments, which the openai
SDK skips; a client that leaves mid-stream still stops the generation. The decoder is the scripted
fake (tests/fakes.py): these tests are about the stream,
not about what is generated."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
from apps import build_app
from fakes import ScriptedGenerator
from serving import serve_in_thread

from semsearch.service import streaming

STREAMS = {
    "/generate": {"prompt": "Hi", "max_new_tokens": 8},
    "/v1/completions": {"prompt": "Hi", "max_tokens": 8},
    "/v1/chat/completions": {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8},
    "/rag": {"query": "Hi", "max_new_tokens": 8},
}


def data_events(text: str) -> list:
    """The `data:` payloads of a raw SSE body, `[DONE]` as a string, the rest parsed."""
    out = []
    for line in text.splitlines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def streamed_text(path: str, events: list) -> str:
    """What the client assembles from a finished stream's events, in the route's dialect."""
    parts = []
    for event in events:
        if event == "[DONE]" or "sources" in event:
            continue
        if path.startswith("/v1/"):
            for choice in event["choices"]:
                piece = choice["delta"].get("content", "") if "delta" in choice else choice["text"]
                parts.append(piece or "")
        else:
            parts.append(event["text"])
    return "".join(parts)


@pytest.mark.parametrize("fail_after", [0, 1])
@pytest.mark.parametrize("path", list(STREAMS))
def test_an_error_mid_stream_is_one_event_in_the_routes_envelope_then_done(
    make_client, fake_embedder, path, fail_after
):
    with make_client(fake_embedder, ScriptedGenerator(fail_after=fail_after)) as client:
        response = client.post(path, json={**STREAMS[path], "stream": True})
    assert response.status_code == 200, response.text
    events = data_events(response.text)
    assert events[-1] == "[DONE]"
    error = events[-2]
    if path.startswith("/v1/"):
        assert error["error"]["type"] == "server_error" and error["error"]["code"] == "backend"
    else:
        assert error["error_type"] == "Backend"
    assert error["request_id"] == response.headers["x-request-id"]
    assert "secret" not in response.text  # the cause is in the log, under the request id
    # What came before the failure arrived intact.
    assert streamed_text(path, events[:-2]) == "Hello"[: 5 * fail_after]
    assert events.count("[DONE]") == 1


@pytest.mark.parametrize("path", list(STREAMS))
def test_a_silent_prefill_sends_keep_alive_comments_and_the_stream_is_unchanged(
    make_client, fake_embedder, monkeypatch, path
):
    body = {**STREAMS[path], "stream": True}
    generator = ScriptedGenerator()
    with make_client(fake_embedder, generator) as client:
        quick = client.post(path, json=body).text
        assert streaming.KEEPALIVE not in quick  # no comment when events keep coming
        monkeypatch.setattr(streaming, "KEEPALIVE_SECONDS", 0.05)
        generator.prefill_seconds = 0.5
        slow = client.post(path, json=body)
    assert slow.status_code == 200
    assert slow.text.count(streaming.KEEPALIVE) >= 3, slow.text[:300]
    # A comment is a whole SSE block of its own: without them the body is an ordinary stream.
    fast_events, slow_events = data_events(quick), data_events(slow.text)
    assert streamed_text(path, slow_events) == streamed_text(path, fast_events) == "Hello there!"
    assert len(slow_events) == len(fast_events)
    assert slow.text.replace(streaming.KEEPALIVE, "").startswith("data: ")


def test_the_openai_sdk_reads_a_stream_with_keep_alives(fake_embedder, tmp_path, monkeypatch):
    monkeypatch.setattr(streaming, "KEEPALIVE_SECONDS", 0.05)
    generator = ScriptedGenerator(prefill_seconds=0.4)
    app = build_app(fake_embedder, generator, index_dir=tmp_path / "index")
    messages = [{"role": "user", "content": "Hi"}]
    with serve_in_thread(app) as url:
        # The bytes on the wire hold the comments ...
        raw = httpx.post(
            f"{url}/v1/chat/completions",
            json={"messages": messages, "stream": True},
            timeout=30,
        ).text
        assert raw.count(streaming.KEEPALIVE) >= 3
        # ... and the SDK, unpatched, reads past them.
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        chunks = list(client.chat.completions.create(model="x", messages=messages, stream=True))
        completion = list(client.completions.create(model="x", prompt="Hi", stream=True))
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == "Hello there!"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].text for c in completion) == "Hello there!"


def test_a_client_that_leaves_during_a_silent_prefill_stops_the_generation(
    fake_embedder, tmp_path, monkeypatch
):
    """The next event is awaited in a task of its own (so the wait can time out into a keep-alive):
    leaving must still reach the generation, whose slot then comes back long before its 200
    tokens would have ended (0.5 s of prefill, then 10 s of tokens)."""
    monkeypatch.setattr(streaming, "KEEPALIVE_SECONDS", 0.05)
    generator = ScriptedGenerator(["x "] * 200, prefill_seconds=0.5, seconds_per_token=0.05)
    app = build_app(
        fake_embedder, generator, index_dir=tmp_path / "index", max_concurrent_generations=1
    )
    body = {"prompt": "Hi", "max_new_tokens": 200, "stream": True}
    with serve_in_thread(app) as url:
        with httpx.stream("POST", f"{url}/generate", json=body, timeout=30) as response:
            first = next(line for line in response.iter_lines() if line)
        assert first == streaming.KEEPALIVE.strip()  # left during the prefill
        left = time.monotonic()
        probe = {"prompt": "Hi", "max_new_tokens": 1}
        while (status := httpx.post(f"{url}/generate", json=probe, timeout=30).status_code) == 429:
            assert time.monotonic() - left < 5, "the generation went on after its client left"
            time.sleep(0.05)
        assert status == 200

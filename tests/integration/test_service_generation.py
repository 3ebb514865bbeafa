"""`/generate`, `/v1/completions`, `/v1/chat/completions` and `/rag` against the real decoder.

The decoder itself is checked against transformers in tests/conformance/test_decoder_*; here the
routes must return exactly what the library generates, in the documented shapes, streamed or not.
Retrieval for `/rag` runs the real encoder; the other routes never reach an encoder, so their apps
hold the hashing embedder (tests/fakes.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from semsearch.decoder.prefix_cache import PrefixCache
from semsearch.service.app import create_app
from semsearch.service.errors import Overloaded
from semsearch.service.generation import GenerationEngine, Sampling
from semsearch.service.settings import Settings

PROMPT = "The capital of France is"
# A first turn long enough (32 tokens and more) for its generation prompt to be a split point
LONG_QUESTION = (
    "What is the capital of France, which river runs through it, and what are two famous "
    "buildings that stand on its banks? Please answer in a few short sentences."
)
MESSAGES = [{"role": "user", "content": "Name three primary colors."}]


@pytest.fixture
def client(make_client, fake_embedder, real_generator) -> Iterator[TestClient]:
    with make_client(fake_embedder, real_generator) as c:
        yield c


@pytest.fixture
def rag_client(make_client, real_embedder, real_generator) -> Iterator[TestClient]:
    with make_client(real_embedder, real_generator) as c:
        yield c


def greedy_text(generator, prompt_ids, n: int) -> tuple[str, list[int]]:
    ids = generator.generate(prompt_ids, max_new_tokens=n, temperature=0.0)
    text_ids = [t for t in ids if t != generator.eos_token_id]
    return generator.tokenizer.decode(text_ids), ids


def sse_events(response: httpx.Response) -> list:
    assert response.headers["content-type"].startswith("text/event-stream")
    events = []
    for line in response.text.splitlines():
        if line.startswith("data: "):
            payload = line[len("data: ") :]
            events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def test_generate_equals_the_library_greedy_output(client, real_generator):
    prompt_ids = real_generator.tokenizer.encode(PROMPT)
    expected, ids = greedy_text(real_generator, prompt_ids, 12)
    body = client.post("/generate", json={"prompt": PROMPT, "max_new_tokens": 12}).json()
    assert body["text"] == expected
    assert body["finish_reason"] == ("stop" if ids[-1] == real_generator.eos_token_id else "length")
    assert body["usage"] == {
        "prompt_tokens": len(prompt_ids),
        "completion_tokens": len(ids),
        "cached_tokens": 0,  # the shared decoder has no prefix cache
    }
    tokens = float(len(prompt_ids) + len(ids))
    assert f'semsearch_tokens_total{{model="decoder"}} {tokens}' in client.get("/metrics").text


def test_generate_with_messages_applies_the_chat_template(client, real_generator):
    prompt = real_generator.apply_chat_template(MESSAGES, add_generation_prompt=True)
    expected, _ = greedy_text(real_generator, real_generator.tokenizer.encode(prompt), 16)
    body = client.post("/generate", json={"messages": MESSAGES, "max_new_tokens": 16}).json()
    assert body["text"] == expected


def test_streamed_deltas_add_up_to_the_whole_text(client):
    request = {"prompt": PROMPT, "max_new_tokens": 10}
    whole = client.post("/generate", json=request).json()
    events = sse_events(client.post("/generate", json={**request, "stream": True}))
    assert "".join(e["text"] for e in events) == whole["text"]
    assert events[-1]["finish_reason"] == whole["finish_reason"]
    assert events[-1]["usage"] == whole["usage"]
    assert all("finish_reason" not in e for e in events[:-1])


def test_seeded_sampling_is_reproducible(client):
    request = {"prompt": PROMPT, "max_new_tokens": 12, "temperature": 0.9, "top_p": 0.95}
    first = client.post("/generate", json={**request, "seed": 7}).json()["text"]
    again = client.post("/generate", json={**request, "seed": 7}).json()["text"]
    assert first == again


def test_stop_strings_end_the_text(client, real_generator):
    full = client.post("/generate", json={"prompt": PROMPT, "max_new_tokens": 12}).json()["text"]
    word = full.split()[1] if len(full.split()) > 1 else full.strip()
    body = client.post(
        "/generate", json={"prompt": PROMPT, "max_new_tokens": 12, "stop": [word]}
    ).json()
    assert body["finish_reason"] == "stop"
    assert body["text"] == full[: full.index(word)]


def test_openai_chat_completions(client, real_generator):
    prompt = real_generator.apply_chat_template(MESSAGES, add_generation_prompt=True)
    prompt_ids = real_generator.tokenizer.encode(prompt)
    expected, ids = greedy_text(real_generator, prompt_ids, 16)
    request = {"model": "smollm", "messages": MESSAGES, "max_tokens": 16, "temperature": 0}
    body = client.post("/v1/chat/completions", json=request).json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "SmolLM2-135M-Instruct"  # the served model, not the request's name
    assert body["choices"][0]["message"] == {"role": "assistant", "content": expected}
    assert body["usage"] == {
        "prompt_tokens": len(prompt_ids),
        "completion_tokens": len(ids),
        "total_tokens": len(prompt_ids) + len(ids),
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    stream = {**request, "stream": True, "stream_options": {"include_usage": True}}
    events = sse_events(client.post("/v1/chat/completions", json=stream))
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == expected
    assert chunks[-1]["usage"] == body["usage"] and chunks[-1]["choices"] == []
    assert chunks[-2]["choices"][0]["finish_reason"] == body["choices"][0]["finish_reason"]


def test_openai_completions(client, real_generator):
    expected, _ = greedy_text(real_generator, real_generator.tokenizer.encode(PROMPT), 16)
    body = client.post("/v1/completions", json={"prompt": PROMPT, "temperature": 0}).json()
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"] == expected  # OpenAI's default max_tokens is 16
    events = sse_events(
        client.post("/v1/completions", json={"prompt": PROMPT, "temperature": 0, "stream": True})
    )
    assert events[-1] == "[DONE]"
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == expected


def test_rag_answers_from_the_retrieved_sources(rag_client):
    docs = [
        {"id": "paris", "text": "Paris is the capital and largest city of France."},
        {"id": "tokyo", "text": "Tokyo is the capital of Japan."},
        {"id": "bread", "text": "Bread is made from flour, water and yeast."},
    ]
    rag_client.post("/documents", json={"documents": docs})
    request = {"query": "What is the capital of France?", "k": 2, "max_new_tokens": 24}
    body = rag_client.post("/rag", json=request).json()
    assert [s["id"] for s in body["sources"]][0] == "paris"
    hits = rag_client.post("/search", json={"query": request["query"], "k": 2}).json()["hits"]
    assert [s["id"] for s in body["sources"]] == [h["id"] for h in hits]
    assert body["answer"].strip()
    assert body["usage"]["completion_tokens"] >= 1
    assert "Paris" in body["answer"]

    events = sse_events(rag_client.post("/rag", json={**request, "stream": True}))
    assert [s["id"] for s in events[0]["sources"]] == [s["id"] for s in body["sources"]]
    assert "".join(e.get("text", "") for e in events[1:]) == body["answer"]
    assert events[-1]["finish_reason"] == body["finish_reason"]


@pytest.fixture
def prefix_cached(real_generator) -> Iterator[None]:
    """The shared decoder with a prefix cache, for one test."""
    saved = real_generator.prefix_cache
    real_generator.prefix_cache = PrefixCache(32 << 20)
    try:
        yield
    finally:
        real_generator.prefix_cache = saved


@pytest.mark.usefixtures("prefix_cached")
def test_the_next_chat_turn_reports_its_reused_prompt_as_cached_tokens(
    make_client, real_embedder, real_generator
):
    turn1 = [
        {"role": "system", "content": "You are a concise geography tutor."},
        {"role": "user", "content": LONG_QUESTION},
    ]
    with make_client(real_embedder, real_generator) as client:
        request = {"messages": turn1, "max_tokens": 8}
        first = client.post("/v1/chat/completions", json=request).json()
        answer = first["choices"][0]["message"]["content"]
        turn2 = [*turn1, {"role": "assistant", "content": answer}, MESSAGES[0]]
        second = client.post("/v1/chat/completions", json={**request, "messages": turn2}).json()
        assert first["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}
        # Everything before turn 1's generation prompt, which begins turn 2's assistant message.
        reused = len(real_generator.chat_ids(turn1)) - len(
            real_generator.tokenizer.encode("<|im_start|>assistant\n")
        )
        assert second["usage"]["prompt_tokens_details"] == {"cached_tokens": reused}

        # /rag: another question on the same document reuses the instructions and the sources.
        client.post("/documents", json={"documents": [{"id": "p", "text": "Paris is in France."}]})
        rag = [
            client.post("/rag", json={"query": q, "k": 1, "max_new_tokens": 2}).json()
            for q in ("Where is Paris? Answer in one short sentence, please.", "Is Paris big?")
        ]
        assert rag[0]["usage"]["cached_tokens"] == 0
        assert rag[0]["usage"]["prompt_tokens"] > rag[1]["usage"]["cached_tokens"] >= 20


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/generate", {"prompt": "x", "messages": MESSAGES}),
        ("/generate", {}),
        ("/generate", {"prompt": ""}),
        ("/generate", {"prompt": "x", "temperature": -1}),
        ("/generate", {"prompt": "x", "top_p": 0}),
        ("/generate", {"prompt": "x", "stop": [""]}),
        ("/generate", {"messages": [{"role": "wizard", "content": "x"}]}),
        ("/generate", {"messages": []}),
        ("/rag", {"query": ""}),
        ("/rag", {"query": "q", "filter": {"a": {"bogus": 1}}}),
    ],
)
def test_bad_generation_requests_are_422(client, path, body):
    response = client.post(path, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error_type"] == "Validation"


def test_openai_bad_request_uses_the_openai_envelope(client):
    response = client.post("/v1/chat/completions", json={"messages": []})
    assert response.status_code == 400  # OpenAI's status: its dialect has no 422
    assert response.json()["error"]["type"] == "invalid_request_error"
    role = {"messages": [{"role": "wizard", "content": "hi"}]}
    refused = client.post("/v1/chat/completions", json=role)
    assert refused.status_code == 400 and refused.json()["error"]["param"].startswith("messages")


def test_generation_past_the_concurrency_limit_is_429(fake_embedder, real_generator, tmp_path):
    app = create_app(
        Settings(index_dir=tmp_path / "i", max_concurrent_generations=1),
        embedder=fake_embedder,
        generator=real_generator,
    )

    async def two_at_once() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            body = {"prompt": PROMPT, "max_new_tokens": 24}
            responses = await asyncio.gather(
                c.post("/generate", json=body), c.post("/generate", json=body)
            )
        return sorted(r.status_code for r in responses)

    try:
        assert asyncio.run(two_at_once()) == [200, 429]
    finally:
        app.state.models.close()


def test_leaving_a_stream_stops_the_generation(real_generator):
    engine = GenerationEngine(real_generator, Settings(max_concurrent_generations=1))
    prompt_ids = real_generator.tokenizer.encode(PROMPT)

    async def leave_early() -> float:
        stream = engine.stream(prompt_ids, Sampling(max_new_tokens=400))
        async for _ in stream:
            break
        await stream.aclose()
        left = time.perf_counter()
        while True:  # the slot comes back once the worker has seen the flag
            try:
                probe = engine.stream(prompt_ids, Sampling(max_new_tokens=1))
                async for _ in probe:
                    pass
                return time.perf_counter() - left
            except Overloaded:
                await asyncio.sleep(0.05)
                assert time.perf_counter() - left < 10, "the generation did not stop"

    try:
        # 400 tokens take far longer than this; stopping takes about one token's time.
        assert asyncio.run(leave_early()) < 5
    finally:
        engine.close()

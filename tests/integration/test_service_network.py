"""What only a real socket shows: the API key is checked before the body is read, a body that
never arrives is refused, and a client that leaves takes its queued embedding work with it.

The encoder is the hashing embedder (tests/fakes.py) with a fixed cost per token, so that work
queues up behind the running batch as it does behind the real model, at a known rate."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from apps import build_app
from fakes import TokenHashEmbedder
from serving import serve_in_thread

KEY = "network-test-key"
# A batch of 16,384 tokens (the default SEMSEARCH_MAX_BATCH_TOKENS: two of the requests below)
# takes 0.8 s: a few times faster than the real model on two cores, slow enough for work to queue.
SECONDS_PER_TOKEN = 50e-6


@pytest.fixture(scope="module")
def base_url(tmp_path_factory) -> Iterator[str]:
    app = build_app(
        TokenHashEmbedder(seconds_per_token=SECONDS_PER_TOKEN),
        index_dir=tmp_path_factory.mktemp("index"),
        api_key=KEY,
        body_timeout_s=3.0,
    )
    with serve_in_thread(app) as url:
        yield url


def raw_request(base_url: str, head: str, body: bytes = b"", wait_s: float = 10.0) -> bytes:
    """Send `head` (and `body`), keep the connection open, return what came back in `wait_s`."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait_s) as sock:
        sock.sendall(head.encode() + body)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks):
                    break
        except TimeoutError:
            pass
        return b"".join(chunks)


def test_no_key_is_a_401_before_the_body_is_read(base_url):
    head = (
        "POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000000\r\n\r\n"
    )
    started = time.perf_counter()
    answer = raw_request(base_url, head)  # the megabyte announced is never sent
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert time.perf_counter() - started < 2.5  # less than the body timeout: nothing was awaited
    assert re.search(rb"(?i)x-request-id: [0-9a-f]{32}", answer)


def test_a_body_that_never_arrives_is_a_408(base_url):
    head = (
        "POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {KEY}\r\nContent-Length: 100\r\n\r\n"
    )
    started = time.perf_counter()
    answer = raw_request(base_url, head, b'{"inputs": ')
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert 2.9 < time.perf_counter() - started < 10


def encoder_tokens(base_url: str) -> float:
    metrics = httpx.get(f"{base_url}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    match = re.search(r'semsearch_tokens_total\{model="encoder"\} ([0-9.e+]+)', metrics)
    return float(match.group(1)) if match else 0.0


def test_a_client_that_leaves_takes_its_queued_work_with_it(base_url):
    words = " ".join(f"word{i}" for i in range(400))  # 256 tokens once truncated
    body = json.dumps({"inputs": [f"{n} {words}" for n in range(32)]}).encode()
    head = (
        "POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {KEY}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    before = encoder_tokens(base_url)
    host, port = base_url.removeprefix("http://").split(":")
    abandoned = 12
    for _ in range(abandoned):
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(head.encode() + body)
        # closed at once: the request is queued, its client gone
    time.sleep(0.5)  # the server notices a gone client within a 250 ms poll
    # One more request queues behind whatever is left: once it is answered, nothing is pending.
    headers = {"Authorization": f"Bearer {KEY}"}
    httpx.post(f"{base_url}/embed", json={"inputs": "x"}, headers=headers, timeout=300)
    spent = encoder_tokens(base_url) - before
    # 12 x 32 x 256 tokens were asked for; at most the batches already running were computed.
    assert spent < abandoned * 32 * 256 / 2, spent

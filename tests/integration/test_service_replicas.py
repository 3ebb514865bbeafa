"""Replicas: `semsearch serve --workers 2` on one collection directory (a real uvicorn with two
worker processes, each its own handle on the SQLite + FAISS files), and the embed-only server
(SEMSEARCH_STORE=none) that keeps no state at all.

The workers load the hashing encoder of tests/fakes.py in place of the model (a sitecustomize on
their PYTHONPATH, which spawned processes import too) and name themselves in a response header,
so that each request can be sent to the worker the test means.
"""

from __future__ import annotations

import os
import re
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serving import REPO, free_port, running_server

PID = "x-worker-pid"
WORKER_HOOKS = f"""
    import os

    import semsearch.service.app as app_module
    import semsearch.service.models as models_module
    from fakes import TokenHashEmbedder

    models_module.load_configured_embedder = lambda settings: TokenHashEmbedder()
    _create_app = app_module.create_app


    def create_app(*args, **kwargs):
        app = _create_app(*args, **kwargs)

        @app.middleware("http")
        async def name_the_worker(request, call_next):
            response = await call_next(request)
            response.headers["{PID}"] = str(os.getpid())
            return response

        return app


    app_module.create_app = create_app
"""


class Worker:
    """A keep-alive connection that one worker process accepted: every request goes to it."""

    def __init__(self, client: httpx.Client, pid: str) -> None:
        self.client, self.pid = client, pid

    def send(self, method: str, path: str, **kwargs) -> httpx.Response:
        response = self.client.request(method, path, **kwargs)
        assert response.headers[PID] == self.pid, "the connection moved to another worker"
        return response

    def search(self, query: str, path: str = "/search") -> list[str]:
        response = self.send("POST", path, json={"query": query, "k": 5})
        assert response.status_code == 200, response.text
        return [hit["id"] for hit in response.json()["hits"]]


def _one_connection_per_worker(base: str, workers: int) -> Iterator[list[Worker]]:
    """Open connections until `workers` distinct processes have accepted one; each ready."""
    found: dict[str, Worker] = {}
    spare: list[httpx.Client] = []
    try:
        for _ in range(100):
            client = httpx.Client(base_url=base, timeout=30)
            pid = client.get("/health").headers[PID]
            if pid in found:
                spare.append(client)
                continue
            found[pid] = Worker(client, pid)
            deadline = time.monotonic() + 60
            while found[pid].send("GET", "/ready").status_code != 200:  # models load apart
                assert time.monotonic() < deadline, f"worker {pid} never became ready"
                time.sleep(0.1)
            if len(found) == workers:
                break
        assert len(found) == workers, f"100 connections reached only workers {sorted(found)}"
        yield list(found.values())
    finally:
        for client in spare + [w.client for w in found.values()]:
            client.close()


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[list[Worker]]:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(textwrap.dedent(WORKER_HOOKS))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SEMSEARCH_")},
        "SEMSEARCH_MODELS_DIR": os.environ["SEMSEARCH_MODELS_DIR"],
        "SEMSEARCH_INDEX_DIR": str(tmp_path / "index"),
        "SEMSEARCH_DECODER": "off",
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(REPO / "tests")]),
    }
    port = free_port()
    command = [sys.executable, "-m", "semsearch", "serve", "--workers", "2", "--port", str(port)]
    with running_server(command, port, env, log=tmp_path / "server.log") as base:
        yield from _one_connection_per_worker(base, 2)


def test_two_workers_on_one_directory_see_each_others_writes(two_workers):
    a, b = two_workers
    fox = {"id": "fox", "text": "the quick brown fox jumps over the fence"}
    dogs = {"id": "dogs", "text": "lazy dogs sleep in the afternoon sun"}
    assert a.send("POST", "/documents", json={"documents": [fox]}).status_code == 200
    assert b.send("POST", "/documents", json={"documents": [dogs]}).status_code == 200
    for worker in (a, b):  # each finds what the other wrote, and what it wrote itself
        assert worker.search("quick brown fox")[0] == "fox"
        assert worker.search("lazy dogs sleeping")[0] == "dogs"
        assert worker.send("GET", "/count").json()["count"] == 2
        assert worker.send("GET", "/documents/dogs").json()["text"] == dogs["text"]

    changed = {**fox, "text": "a red fox hides in the hedge"}
    assert b.send("POST", "/documents", json={"documents": [changed]}).status_code == 200
    assert a.send("GET", "/documents/fox").json()["text"] == changed["text"]
    assert a.search("red fox hedge")[0] == "fox"
    assert a.send("DELETE", "/documents/dogs").status_code == 200
    assert "dogs" not in b.search("lazy dogs sleeping")
    assert b.send("GET", "/documents/dogs").status_code == 404
    assert b.send("GET", "/info").json()["index"]["count"] == 1

    # A named collection created through one worker is opened by the other on first use.
    assert a.send("POST", "/collections", json={"name": "books"}).status_code == 201
    book = {"id": "dune", "text": "spice melange on the desert planet"}
    response = b.send("POST", "/collections/books/documents", json={"documents": [book]})
    assert response.status_code == 200
    assert a.search("desert planet spice", "/collections/books/search") == ["dune"]
    assert "books" in [c["name"] for c in b.send("GET", "/collections").json()["collections"]]


# --- embed-only: SEMSEARCH_STORE=none ------------------------------------------------------------

STORE_PREFIXES = ("/documents", "/count", "/search", "/rag", "/collections")


def test_embed_only_serves_embeddings_and_no_directory(tmp_path, make_client, fake_embedder):
    index_dir = tmp_path / "data" / "index"
    with make_client(fake_embedder, store="none", index_dir=index_dir) as client:
        assert client.get("/ready").json() == {"status": "ok"}
        assert client.get("/health").status_code == 200
        embed = client.post("/embed", json={"inputs": ["hello", "world"]})
        assert embed.status_code == 200 and len(embed.json()) == 2
        openai = client.post("/v1/embeddings", json={"input": "hello", "model": "x"})
        assert openai.status_code == 200, openai.text
        ids = client.post("/tokenize", json={"inputs": "hello", "add_special_tokens": False})
        assert ids.status_code == 200
        decoded = client.post("/decode", json={"ids": [[t["id"] for t in ids.json()[0]]]})
        assert decoded.json() == ["hello"]
        assert client.get("/v1/models").status_code == 200
        assert client.get("/info").json()["index"] == {"store": "none"}
        assert client.get("/metrics").status_code == 200
    assert not (tmp_path / "data").exists()  # no index, collections or snapshots directory


def test_embed_only_answers_every_store_route_with_503(tmp_path, make_client, fake_embedder):
    with make_client(fake_embedder, store="none") as client:
        paths = client.get("/openapi.json").json()["paths"]
        routes = [
            (method, path)
            for path, methods in paths.items()
            for method in methods
            if path.startswith(STORE_PREFIXES)
        ]
        assert len(routes) > 15  # still published: a client reads why, not a 404
        for method, path in routes:
            url = re.sub(r"\{[^}]*\}", "x", path)  # any value for the path parameters
            response = client.request(method.upper(), url, json={} if method == "post" else None)
            assert response.status_code == 503, (method, path, response.text)
            body = response.json()
            assert body["error_type"] == "Unhealthy"
            assert "SEMSEARCH_STORE=none" in body["error"], body
    assert not (tmp_path / "index").exists()


def test_the_default_store_reports_itself(make_client, fake_embedder):
    with make_client(fake_embedder) as client:
        index = client.get("/info").json()["index"]
        assert index["store"] == "local" and index["count"] == 0

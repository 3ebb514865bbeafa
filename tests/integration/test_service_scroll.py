"""Paging through, counting and deleting what is stored: `GET /documents`, `GET /count`,
`POST /documents/delete`, checked against the documents the test wrote (the brute force)."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from filter_reference import reference_match

N = 300


def document(i: int) -> dict[str, Any]:
    rng = random.Random(i)
    metadata: dict[str, Any] = {"n": i % 7, "lang": rng.choice(["en", "fr", "de"])}
    if rng.random() < 0.6:
        metadata["author"] = {"name": rng.choice(["ada", "bob"]), "age": rng.randrange(20, 60)}
    # Ids in an order that is not insertion order; one with characters a URL must escape.
    doc_id = f"doc-{(i * 7919) % 1000:04d}" if i else "dir/ü ?&#"
    return {"id": doc_id, "text": f"text {i}", "metadata": metadata}


DOCS = [document(i) for i in range(N)]


@pytest.fixture
def client(make_client, fake_embedder) -> Iterator[TestClient]:
    with make_client(fake_embedder) as c:
        for start in range(0, N, 100):
            response = c.post("/documents", json={"documents": DOCS[start : start + 100]})
            assert response.status_code == 200, response.text
        yield c


def pages(client: TestClient, limit: int, flt: Any = None, between=None) -> list[dict]:
    """Every page's documents, following next_cursor; `between(page_number)` runs between pages."""
    seen: list[dict] = []
    params: dict[str, Any] = {"limit": limit}
    if flt is not None:
        params["filter"] = json.dumps(flt)
    for number in range(10_000):
        response = client.get("/documents", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["documents"]) <= limit
        seen += body["documents"]
        if body["next_cursor"] is None:
            return seen
        params["cursor"] = body["next_cursor"]
        if between is not None:
            between(number)
    raise AssertionError("the scroll did not end")


def test_scroll_returns_every_document_once_in_id_order(client):
    seen = pages(client, limit=17)
    assert [d["id"] for d in seen] == sorted(d["id"] for d in DOCS)
    stored = {d["id"]: d for d in DOCS}
    assert all(d == stored[d["id"]] for d in seen)
    # A page size that divides the count exactly still ends on an empty look-ahead, not a loop.
    assert len(pages(client, limit=N)) == N and len(pages(client, limit=N // 3)) == N


def test_scroll_covers_each_lasting_document_exactly_once_while_writes_happen(client):
    rng = random.Random(3)
    lasting = {d["id"] for d in DOCS}
    written: list[str] = []

    def write(number: int) -> None:
        # New documents anywhere in the id order, and documents that come and go.
        new = [{"id": f"doc-{rng.randrange(1000):04d}x{number}", "text": "new"} for _ in range(5)]
        assert client.post("/documents", json={"documents": new}).status_code == 200
        written.extend(d["id"] for d in new)
        gone = written.pop(rng.randrange(len(written)))
        assert client.post("/documents/delete", json={"ids": [gone]}).json() == {"deleted": 1}

    seen = Counter(d["id"] for d in pages(client, limit=23, between=write))
    assert all(seen[i] == 1 for i in lasting), "a lasting document was skipped or repeated"
    assert max(seen.values()) == 1


@pytest.mark.parametrize(
    "flt",
    [
        {"lang": "en"},
        {"author.name": "ada", "n": {"gte": 3}},
        {"$or": [{"lang": "de"}, {"author.age": {"lt": 30}}]},
        {"$not": {"author": {"exists": True}}},
        {"$and": [{"n": {"in": [1, 2]}}, {"$not": {"lang": "fr"}}]},
    ],
)
def test_count_and_filtered_scroll_match_brute_force(client, flt):
    expected = sorted(d["id"] for d in DOCS if reference_match(d["metadata"], flt))
    assert 0 < len(expected) < N
    response = client.get("/count", params={"filter": json.dumps(flt)})
    assert response.json() == {"count": len(expected)}
    assert [d["id"] for d in pages(client, limit=10, flt=flt)] == expected
    assert client.get("/count").json() == {"count": N}


def test_delete_by_ids_and_by_filter_counts_and_keeps_the_rest(client):
    ids = [DOCS[1]["id"], DOCS[2]["id"], "no-such-id"]
    assert client.post("/documents/delete", json={"ids": ids}).json() == {"deleted": 2}
    flt = {"$and": [{"lang": "fr"}, {"author.name": {"exists": True}}]}
    left = [d for d in DOCS if d["id"] not in ids]
    doomed = {d["id"] for d in left if reference_match(d["metadata"], flt)}
    response = client.post("/documents/delete", json={"filter": flt})
    assert response.json() == {"deleted": len(doomed)} and doomed
    remaining = {d["id"] for d in pages(client, limit=100)}
    assert remaining == {d["id"] for d in left} - doomed
    assert client.get("/count").json() == {"count": len(remaining)}
    hits = client.post("/search", json={"query": "text", "k": 100, "filter": flt}).json()
    assert hits["hits"] == []  # gone from the vector index too


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "param"),
    [
        ("get", "/documents", {"params": {"limit": 1001}}, "SEMSEARCH_MAX_PAGE_SIZE"),
        ("get", "/documents", {"params": {"limit": 0}}, "limit"),
        ("get", "/documents", {"params": {"cursor": "%%%"}}, "cursor"),
        ("get", "/documents", {"params": {"cursor": "_w=="}}, "cursor"),  # not UTF-8
        ("get", "/count", {"params": {"filter": "{lang"}}, "JSON"),
        ("get", "/count", {"params": {"filter": "[1]"}}, "JSON object"),
        ("get", "/count", {"params": {"filter": '{"$xor": []}'}}, "combinator"),
        ("post", "/documents/delete", {"json": {}}, "exactly one"),
        ("post", "/documents/delete", {"json": {"ids": ["a"], "filter": {"a": 1}}}, "exactly one"),
        ("post", "/documents/delete", {"json": {"filter": {}}}, "at least one condition"),
        ("post", "/documents/delete", {"json": {"ids": []}}, "ids"),
    ],
)
def test_bad_paging_counting_and_deleting_are_422_and_delete_nothing(
    client, method, path, kwargs, param
):
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == 422, response.text
    assert param in json.dumps(response.json())
    assert client.get("/count").json() == {"count": N}

"""`/documents` and `/search` over a real collection on disk.

Ranking by meaning runs the real encoder; storage, filters, thresholds, errors and restarts run on
the hashing embedder (tests/fakes.py), whose vectors share the real ones' dim and tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from semsearch.service.app import create_app
from semsearch.service.settings import Settings


def _doc(doc_id: str, text: str, **metadata) -> dict:
    return {"id": doc_id, "text": text, "metadata": metadata}


DOCS = [
    _doc("fox", "The quick brown fox jumps over the lazy dog.", year=2001, lang="en"),
    _doc("cat", "A cat sleeps on the warm windowsill all afternoon.", year=2010, lang="en"),
    _doc(
        "faiss",
        "FAISS performs efficient similarity search over dense vectors.",
        year=2017,
        lang="en",
        topic="search",
    ),
    _doc(
        "sqlite",
        "SQLite is a small, fast, self-contained SQL database engine.",
        year=2000,
        lang="en",
        topic="db",
    ),
    _doc("chien", "Le chien court dans le jardin.", year=2015, lang="fr"),
]


def _stored(client: TestClient) -> TestClient:
    assert client.post("/documents", json={"documents": DOCS}).json() == {"upserted": len(DOCS)}
    return client


@pytest.fixture
def client(make_client, fake_embedder) -> Iterator[TestClient]:
    with make_client(fake_embedder) as c:
        yield _stored(c)


@pytest.fixture
def real_client(make_client, real_embedder) -> Iterator[TestClient]:
    with make_client(real_embedder) as c:
        yield _stored(c)


def search(client, query: str, **body) -> list[dict]:
    response = client.post("/search", json={"query": query, **body})
    assert response.status_code == 200, response.text
    assert response.json()["took_ms"] >= 0
    return response.json()["hits"]


def test_search_ranks_by_meaning_with_cosine_scores(real_client, real_embedder):
    hits = search(real_client, "vector similarity search library", k=3)
    assert [h["id"] for h in hits][0] == "faiss"
    assert len(hits) == 3
    assert hits == sorted(hits, key=lambda h: -h["score"])
    # The score is the cosine of the two embeddings.
    q, d = real_embedder.encode(["vector similarity search library", DOCS[2]["text"]])
    assert hits[0]["score"] == pytest.approx(float(q @ d), abs=1e-5)
    assert hits[0]["text"] == DOCS[2]["text"]
    assert hits[0]["metadata"] == DOCS[2]["metadata"]


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"lang": "fr"}, {"chien"}),
        ({"lang": {"in": ["fr", "de"]}}, {"chien"}),
        ({"year": {"gte": 2010, "lte": 2015}}, {"cat", "chien"}),
        ({"year": {"gt": 2010}}, {"faiss", "chien"}),
        ({"year": {"lt": 2001}}, {"sqlite"}),
        ({"lang": {"ne": "en"}}, {"chien"}),
        ({"lang": "en", "topic": "db"}, {"sqlite"}),
    ],
)
def test_filters_return_every_match(client, flt, expected):
    hits = search(client, "anything at all", k=10, filter=flt)
    assert {h["id"] for h in hits} == expected


def test_score_threshold(client):
    hits = search(client, "similarity search over vectors", k=5, score_threshold=0.4)
    assert hits and all(h["score"] >= 0.4 for h in hits)
    assert len(hits) < 5


def test_get_upsert_replace_and_delete(client):
    assert client.get("/documents/cat").json() == {
        "id": "cat",
        "text": DOCS[1]["text"],
        "metadata": DOCS[1]["metadata"],
        "chunks": 0,  # stored whole
    }
    replaced = {"id": "cat", "text": "Vector databases index embeddings.", "metadata": {"v": 2}}
    assert client.post("/documents", json={"documents": [replaced]}).json() == {"upserted": 1}
    assert client.get("/documents/cat").json() == {**replaced, "chunks": 0}
    assert search(client, "a database for embeddings", k=1)[0]["id"] == "cat"
    assert client.delete("/documents/cat").status_code == 200
    assert client.get("/documents/cat").status_code == 404
    assert client.delete("/documents/cat").status_code == 404
    assert "cat" not in {h["id"] for h in search(client, "cat", k=10)}


def test_documents_without_ids_get_generated_ones(client):
    body = client.post("/documents", json={"documents": [{"text": "no id here"}]}).json()
    assert body["upserted"] == 1 and len(body["ids"]) == 1
    assert client.get(f"/documents/{body['ids'][0]}").json()["text"] == "no id here"


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("post", "/documents", {"documents": []}, 422),
        ("post", "/documents", {"documents": [{"id": "x"}]}, 422),
        ("post", "/documents", {"documents": [{"id": "x", "text": 5}]}, 422),
        ("post", "/documents", {"documents": [{"id": "", "text": "t"}]}, 422),
        ("post", "/documents", {"documents": [{"id": "x", "text": "t", "metadata": []}]}, 422),
        ("post", "/documents", {"docs": []}, 422),
        ("post", "/search", {"query": "q", "filter": {"year": {"near": 3}}}, 422),
        ("post", "/search", {"query": "q", "filter": {"year": {"in": 3}}}, 422),
        ("post", "/search", {"query": "q", "k": 0}, 422),
        ("post", "/search", {"k": 3}, 422),
        ("get", "/documents/missing", None, 404),
        ("delete", "/documents/missing", None, 404),
    ],
)
def test_bad_requests_get_the_envelope_and_change_nothing(client, method, path, body, status):
    before = client.get("/info").json()["index"]["count"]
    response = client.request(method, path, json=body)
    assert response.status_code == status, response.text
    error = response.json()
    assert set(error) == {"error", "error_type", "request_id"} and error["error"]
    assert client.get("/info").json()["index"]["count"] == before
    assert client.get("/documents/fox").json()["text"] == DOCS[0]["text"]


def test_too_many_documents_is_413(make_client, fake_embedder):
    with make_client(fake_embedder, max_documents_per_request=2) as c:
        docs = [{"id": str(i), "text": "t"} for i in range(3)]
        response = c.post("/documents", json={"documents": docs})
        assert response.status_code == 413
        assert c.get("/info").json()["index"]["count"] == 0


def test_restart_keeps_every_acknowledged_document(make_client, fake_embedder):
    with make_client(fake_embedder) as c:
        c.post("/documents", json={"documents": DOCS})
        c.delete("/documents/fox")
        before = search(c, "database engine", k=4)
    with make_client(fake_embedder) as c:  # the same tmp_path/index
        assert c.get("/info").json()["index"]["count"] == len(DOCS) - 1
        assert c.get("/documents/fox").status_code == 404
        after = search(c, "database engine", k=4)
    assert [h["id"] for h in after] == [h["id"] for h in before]
    np.testing.assert_allclose([h["score"] for h in after], [h["score"] for h in before], atol=1e-6)


def test_index_built_by_another_encoder_is_refused(fake_embedder, tmp_path):
    from semsearch.index import Collection

    index_dir = tmp_path / "index"
    other = {**fake_embedder.fingerprint(), "weights_sha256": "0" * 64}
    Collection.open(index_dir, dim=fake_embedder.dim, encoder_fingerprint=other).close()
    with pytest.raises(Exception, match="another encoder"):
        create_app(Settings(index_dir=index_dir, decoder="off"), embedder=fake_embedder)

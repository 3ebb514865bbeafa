"""`/search` with `mode`: keyword (BM25) and hybrid (reciprocal-rank fusion) through the real app,
against the collection's own answer for the same query (tests/unit/test_index_keywords.py and
test_index_hybrid.py check that one against rank-bm25 and brute force)."""

from __future__ import annotations

import pytest

from semsearch.index import Fusion

DOCS = [
    {"id": "netconf", "text": "Configure the ip-netconf service.", "metadata": {"kind": "net"}},
    {
        "id": "odirect",
        "text": "Open files with O_DIRECT to skip the cache.",
        "metadata": {"kind": "io"},
    },
    {
        "id": "dryrun",
        "text": "Pass --dry-run to see what would change.",
        "metadata": {"kind": "cli"},
    },
    {"id": "paris", "text": "Paris is the capital of France.", "metadata": {"kind": "geo"}},
    {"id": "tokyo", "text": "Tokyo is the capital of Japan.", "metadata": {"kind": "geo"}},
]


@pytest.fixture
def client(make_client, fake_embedder):
    with make_client(fake_embedder, max_search_k=20, max_keyword_terms=6) as client:
        assert client.post("/documents", json={"documents": DOCS}).status_code == 200
        yield client


def search(client, **body) -> dict:
    response = client.post("/search", json=body)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize(
    ("query", "ids"),
    [("ip-netconf", ["netconf"]), ("O_DIRECT", ["odirect"]), ("--dry-run", ["dryrun"])],
)
def test_keyword_mode_finds_identifiers_as_written(client, query, ids):
    hits = search(client, query=query, mode="keyword")["hits"]
    assert [h["id"] for h in hits] == ids
    assert hits[0]["found_by"] == {"keyword": {"rank": 1, "score": hits[0]["score"]}}
    assert hits[0]["score"] > 0 and hits[0]["text"] and "metadata" in hits[0]


def test_hybrid_mode_is_the_collections_fusion(client, fake_embedder):
    body = {"query": "the capital of France", "k": 4, "filter": {"kind": {"ne": "io"}}}
    hybrid = {**body, "mode": "hybrid", "rrf_k": 10, "weights": {"keyword": 2}, "candidates": 5}
    hits = search(client, **hybrid)["hits"]
    vector = fake_embedder.encode([body["query"]])[0]
    app = client.app.state.models.require_collection()
    fusion = Fusion(rrf_k=10, weights={"keyword": 2.0}, candidates=5)
    want = app.search(vector, 4, body["filter"], text=body["query"], mode="hybrid", fusion=fusion)
    assert [h["id"] for h in hits] == [h.id for h in want]
    assert [h["score"] for h in hits] == pytest.approx([h.score for h in want])
    assert [h["found_by"] for h in hits] == [h.to_dict()["found_by"] for h in want]
    assert hits[0]["id"] == "paris" and set(hits[0]["found_by"]) == {"dense", "keyword"}
    assert all(h["metadata"]["kind"] != "io" for h in hits)


def test_dense_mode_keeps_the_old_answer(client):
    plain = search(client, query="the capital of France", k=2)["hits"]
    dense = search(client, query="the capital of France", k=2, mode="dense")["hits"]
    assert [h["id"] for h in plain] == [h["id"] for h in dense]
    assert all(set(h) == {"id", "score", "text", "metadata"} for h in plain)


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"mode": "sparse"}, 422, ["mode"]),
        ({"mode": "hybrid", "rrf_k": 0}, 422, ["rrf_k"]),
        ({"mode": "hybrid", "weights": {"dense": -1}}, 422, ["dense"]),
        ({"mode": "hybrid", "weights": {"dense": 0, "keyword": 0}}, 422, ["above 0"]),
        ({"mode": "hybrid", "weights": {"sparse": 1}}, 422, ["sparse"]),
        ({"mode": "hybrid", "candidates": 21}, 422, ["candidates", "SEMSEARCH_MAX_SEARCH_K"]),
        ({"mode": "keyword", "query": "a b c d e f g"}, 422, ["SEMSEARCH_MAX_KEYWORD_TERMS"]),
        ({"mode": "hybrid", "query": "a b c d e f g"}, 422, ["SEMSEARCH_MAX_KEYWORD_TERMS"]),
    ],
)
def test_bad_hybrid_requests_are_refused(client, body, status, words):
    response = client.post("/search", json={"query": "capital", **body})
    assert response.status_code == status, response.text
    for word in words:
        assert word in response.json()["error"]


def test_keyword_queries_are_bounded_by_the_input_limit(make_client, fake_embedder):
    with make_client(fake_embedder, max_input_chars=20) as client:
        response = client.post("/search", json={"query": "x" * 21, "mode": "keyword"})
        assert response.status_code == 413 and "SEMSEARCH_MAX_INPUT_CHARS" in response.text


@pytest.mark.parametrize("query", ['"', "NEAR(a b)", "a*", "^a", "kind:geo", "(", "", "AND OR"])
def test_hostile_keyword_queries_are_plain_words(client, query):
    hits = search(client, query=query, mode="keyword")["hits"]
    assert hits == []  # none of these terms is in a document (and none is FTS5 syntax)


def test_info_counts_the_keyword_index(client):
    assert client.get("/info").json()["index"]["keyword_count"] == len(DOCS)
    client.delete("/documents/paris")
    assert client.get("/info").json()["index"]["keyword_count"] == len(DOCS) - 1
    assert search(client, query="France", mode="keyword")["hits"] == []

"""`/search` and `/rag` retrieve through one function (service/retrieval.py): the same bound on k,
and the same hits for the same query."""

from __future__ import annotations

DOCS = [
    {"id": "paris", "text": "Paris is the capital of France."},
    {"id": "bread", "text": "Bread is made from flour, water and yeast."},
    {"id": "tokyo", "text": "Tokyo is the capital of Japan."},
]


def test_search_and_rag_share_the_bound_on_k(make_client, fake_embedder, real_generator):
    with make_client(fake_embedder, real_generator, max_search_k=2) as client:
        for path, body in (("/search", {"query": "q", "k": 3}), ("/rag", {"query": "q", "k": 3})):
            response = client.post(path, json=body)
            assert response.status_code == 422, (path, response.text)
            assert "SEMSEARCH_MAX_SEARCH_K" in response.json()["error"]


def test_rag_cites_what_search_finds(make_client, fake_embedder, real_generator):
    with make_client(fake_embedder, real_generator) as client:
        client.post("/documents", json={"documents": DOCS})
        query = {"query": "the capital of France", "k": 2, "filter": {}}
        hits = client.post("/search", json=query).json()["hits"]
        answer = client.post("/rag", json={**query, "max_new_tokens": 1}).json()
        assert [s["id"] for s in answer["sources"]] == [h["id"] for h in hits]
        assert [s["score"] for s in answer["sources"]] == [h["score"] for h in hits]


def test_rag_retrieves_by_the_search_mode(make_client, fake_embedder, real_generator):
    with make_client(fake_embedder, real_generator) as client:
        client.post("/documents", json={"documents": DOCS})
        for mode, want in (("keyword", ["tokyo"]), ("hybrid", None)):
            query = {"query": "Tokyo, Japan", "k": 2, "mode": mode}
            hits = client.post("/search", json=query).json()["hits"]
            answer = client.post("/rag", json={**query, "max_new_tokens": 1}).json()
            assert [s["id"] for s in answer["sources"]] == [h["id"] for h in hits]
            assert [s["score"] for s in answer["sources"]] == [h["score"] for h in hits]
            assert want is None or [h["id"] for h in hits] == want

"""The service on the Qdrant store (SEMSEARCH_STORE=qdrant), through qdrant-client's in-process
mode (`SEMSEARCH_QDRANT_URL=:memory:`): the same routes answer as on the local store, what only
the local store does is refused with a 422 that says so, and a server that cannot reach Qdrant
fails to load without showing its key. No Qdrant server runs here: the server's own behaviour
is not tested (the README says so)."""

from __future__ import annotations

import pytest

from semsearch.index.qdrant import QdrantUnavailable
from semsearch.service.app import create_app
from semsearch.service.settings import Settings

DOCS = [
    {"id": "a", "text": "whales swim in the cold sea", "metadata": {"lang": "en", "year": 1851}},
    {"id": "b", "text": "bread rises in a warm oven", "metadata": {"lang": "en", "year": 2001}},
    {"id": "c", "text": "les baleines nagent", "metadata": {"lang": "fr", "year": 1990}},
]


@pytest.fixture
def qdrant_client(make_client, fake_embedder):
    with make_client(fake_embedder, store="qdrant", qdrant_url=":memory:") as client:
        yield client


def test_documents_search_and_scroll_on_qdrant(qdrant_client, tmp_path):
    client = qdrant_client
    assert client.post("/documents", json={"documents": DOCS}).status_code == 200
    assert client.get("/count").json() == {"count": 3}
    assert client.get("/count", params={"filter": '{"lang": "en"}'}).json() == {"count": 2}
    hits = client.post("/search", json={"query": "whales swim in the cold sea", "k": 3}).json()
    assert hits["hits"][0]["id"] == "a" and hits["hits"][0]["score"] == pytest.approx(1.0)
    filtered = client.post(
        "/search", json={"query": "whales", "k": 3, "filter": {"year": {"gte": 1900}}}
    ).json()
    assert {h["id"] for h in filtered["hits"]} == {"b", "c"}
    assert client.get("/documents/c").json()["metadata"] == {"lang": "fr", "year": 1990}
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/documents", params=params).json()
        seen += [d["id"] for d in page["documents"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == ["a", "b", "c"]
    gone = client.post("/documents/delete", json={"filter": {"lang": "fr"}}).json()
    assert gone == {"deleted": 1} and client.get("/count").json() == {"count": 2}
    assert client.delete("/documents/a").status_code == 200
    assert client.get("/documents/a").status_code == 404
    assert not (tmp_path / "index").exists()  # nothing local was made


def test_named_collections_on_qdrant(qdrant_client):
    client = qdrant_client
    created = client.post("/collections", json={"name": "books", "chunking": {"tokens": 40}})
    assert created.status_code == 201, created.text
    assert created.json()["index_type"] == "qdrant"
    client.post("/collections/books/documents", json={"documents": DOCS[:2]})
    listed = {c["name"]: c for c in client.get("/collections").json()["collections"]}
    assert list(listed) == ["default", "books"] and listed["books"]["count"] == 2
    assert listed["books"]["chunking"] == {"tokens": 40}
    assert client.post("/collections", json={"name": "books"}).status_code == 409
    field = client.post("/collections/books/field-indexes", json={"field": "lang"})
    assert field.status_code == 201 and field.json()["created"] is True
    assert client.delete("/collections/books").json() == {"dropped": "books"}
    assert client.get("/collections/books/count").status_code == 404
    assert [c["name"] for c in client.get("/collections").json()["collections"]] == ["default"]


@pytest.mark.parametrize(
    ("method", "path", "body", "words"),
    [
        ("post", "/search", {"query": "whales", "mode": "keyword"}, "local store"),
        ("post", "/search", {"query": "whales", "mode": "hybrid"}, "local store"),
        ("post", "/collections", {"name": "x", "index_type": "HNSW32"}, "index_type"),
        ("post", "/collections/default/snapshots", None, "Qdrant collection has its own"),
        ("post", "/search", {"query": "w", "filter": {"lang": {"gt": "a"}}}, "string"),
    ],
)
def test_what_only_the_local_store_does_is_a_422_on_qdrant(
    qdrant_client, method, path, body, words
):
    kwargs = {"json": body} if body is not None else {}
    response = getattr(qdrant_client, method)(path, **kwargs)
    assert response.status_code == 422, response.text
    assert words in response.text


def test_an_unreachable_qdrant_fails_the_load_without_showing_the_key(tmp_path, fake_embedder):
    settings = Settings(
        index_dir=tmp_path / "index",
        decoder="off",
        store="qdrant",
        qdrant_url="http://127.0.0.1:1",  # nothing listens on port 1
        qdrant_api_key="never-shown",
    )
    with pytest.raises(QdrantUnavailable) as raised:
        create_app(settings, embedder=fake_embedder)
    assert "never-shown" not in str(raised.value)
    assert not (tmp_path / "index").exists()


def test_the_in_process_store_takes_one_worker(tmp_path):
    with pytest.raises(ValueError, match="one worker"):
        Settings(index_dir=tmp_path, store="qdrant", qdrant_url=":memory:", workers=2)


@pytest.mark.parametrize("base", ["a__b", "_a", "a" * 201, "semsearch__team"])
def test_a_base_name_that_could_hold_another_deployments_collections_is_refused(tmp_path, base):
    with pytest.raises(ValueError, match="qdrant_collection"):
        Settings(index_dir=tmp_path, store="qdrant", qdrant_url=":memory:", qdrant_collection=base)

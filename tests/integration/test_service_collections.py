"""Named collections: created, listed, used through their own routes, kept apart from each other
and from the default collection, kept across restarts, dropped."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

BOOKS = [
    {"id": "b1", "text": "A novel about whales and the sea.", "metadata": {"year": 1851}},
    {"id": "b2", "text": "A cookbook of bread recipes.", "metadata": {"year": 2001}},
]


def test_a_collection_is_created_used_listed_and_dropped(make_client, fake_embedder, tmp_path):
    with make_client(fake_embedder) as client:
        created = client.post(
            "/collections",
            json={"name": "books", "index_type": "HNSW16", "index_options": {"ef_search": 32}},
        )
        assert created.status_code == 201, created.text
        assert created.json()["factory"] == "HNSW16" and created.json()["count"] == 0
        assert (
            client.post("/collections/books/documents", json={"documents": BOOKS}).status_code
            == 200
        )
        client.post("/documents", json={"documents": [{"id": "d1", "text": "whales of the sea"}]})

        # Each route sees its own collection only.
        hits = client.post("/collections/books/search", json={"query": "whales", "k": 5}).json()
        assert {h["id"] for h in hits["hits"]} == {"b1", "b2"}
        assert [
            h["id"] for h in client.post("/search", json={"query": "whales"}).json()["hits"]
        ] == ["d1"]
        assert client.get("/collections/books/documents/b2").json()["metadata"] == {"year": 2001}
        assert client.get("/documents/b2").status_code == 404
        assert client.get(
            "/collections/books/count", params={"filter": '{"year": {"gt": 1900}}'}
        ).json() == {"count": 1}
        page = client.get("/collections/books/documents", params={"limit": 1}).json()
        assert [d["id"] for d in page["documents"]] == ["b1"] and page["next_cursor"]
        assert client.get("/collections/default/count").json() == {"count": 1}

        listed = client.get("/collections").json()["collections"]
        assert [(c["name"], c["count"]) for c in listed] == [("default", 1), ("books", 2)]
        assert client.get("/collections/books").json()["count"] == 2

        gone = client.post("/collections/books/documents/delete", json={"ids": ["b2"]})
        assert gone.json() == {"deleted": 1}
        assert client.delete("/collections/books").json() == {"dropped": "books"}
        assert client.get("/collections/books").status_code == 404
        assert client.post("/collections/books/search", json={"query": "x"}).status_code == 404
        assert [c["name"] for c in client.get("/collections").json()["collections"]] == ["default"]
        assert client.get("/count").json() == {"count": 1}  # the default is untouched
    assert not any(p.name == "books" for p in (tmp_path / "collections").iterdir())


def test_collections_last_across_restarts(make_client, fake_embedder):
    with make_client(fake_embedder) as client:
        client.post("/collections", json={"name": "books"})
        client.post("/collections/books/documents", json={"documents": BOOKS})
    with make_client(fake_embedder) as client:
        listed = client.get("/collections").json()["collections"]
        assert [(c["name"], c["count"]) for c in listed] == [("default", 0), ("books", 2)]
        assert client.get("/collections/books/documents/b1").json()["text"] == BOOKS[0]["text"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "words"),
    [
        ("post", "/collections", {"name": "../etc"}, 422, "letters, digits"),
        ("post", "/collections", {"name": ".hidden"}, 422, "letters, digits"),
        ("post", "/collections", {"name": "x" * 65}, 422, "64"),
        ("post", "/collections", {"name": "ok", "index_type": "BTree"}, 422, "unknown index type"),
        ("post", "/collections", {"name": "ok", "index_options": {"m": 1}}, 422, "m"),
        (
            "post",
            "/collections",
            {"name": "ok", "index_options": {"ef_search": 0}},
            422,
            "ef_search",
        ),
        ("post", "/collections", {"name": "default"}, 409, "exists"),
        ("delete", "/collections/default", None, 422, "cannot be dropped"),
        ("delete", "/collections/nope", None, 404, "no collection"),
        ("get", "/collections/nope/documents", None, 404, "no collection"),
        ("get", "/collections/bad%20name/count", None, 422, "letters, digits"),
    ],
)
def test_bad_collection_requests_are_refused_and_create_nothing(
    make_client, fake_embedder, tmp_path, method, path, body, status, words
):
    with make_client(fake_embedder) as client:
        kwargs = {"json": body} if body is not None else {}
        response = getattr(client, method)(path, **kwargs)
        assert response.status_code == status, response.text
        assert words in response.text
        assert [c["name"] for c in client.get("/collections").json()["collections"]] == ["default"]
    root = tmp_path / "collections"
    assert not root.exists() or [p.name for p in root.iterdir()] == []
    assert not (tmp_path / "etc").exists()


def test_the_number_of_open_collections_is_bounded(make_client, fake_embedder):
    with make_client(fake_embedder, max_collections=2) as client:
        assert client.post("/collections", json={"name": "one"}).status_code == 201
        response = client.post("/collections", json={"name": "two"})
        assert response.status_code == 429 and "SEMSEARCH_MAX_COLLECTIONS" in response.text
        assert client.delete("/collections/one").status_code == 200
        assert client.post("/collections", json={"name": "two"}).status_code == 201


def test_a_collection_of_another_encoder_is_refused(make_client, fake_embedder, tmp_path: Path):
    from fakes import TokenHashEmbedder

    with make_client(fake_embedder) as client:
        client.post("/collections", json={"name": "books"})
        client.post("/collections/books/documents", json={"documents": BOOKS})
    other = TokenHashEmbedder(seed=1)  # same dimension, another fingerprint
    with make_client(
        other, index_dir=tmp_path / "index2", collections_dir=tmp_path / "collections"
    ) as client:
        response = client.get("/collections/books/count")
        assert response.status_code == 409, response.text


def test_snapshots_are_taken_listed_restored_bounded_and_deleted(
    make_client, fake_embedder, tmp_path
):
    from semsearch.index.backup import restore

    with make_client(fake_embedder, max_snapshots=2) as client:
        client.post("/collections", json={"name": "books"})
        client.post("/collections/books/documents", json={"documents": BOOKS})
        taken = client.post("/collections/books/snapshots")
        assert taken.status_code == 201, taken.text
        snap = taken.json()
        assert snap["documents"] == 2 and snap["name"].startswith("books-")
        client.post("/collections/books/documents/delete", json={"ids": ["b1"]})
        second = client.post("/collections/books/snapshots").json()
        assert second["documents"] == 1
        listed = client.get("/collections/books/snapshots").json()["snapshots"]
        assert sorted(s["name"] for s in listed) == sorted([snap["name"], second["name"]])
        full = client.post("/collections/books/snapshots")
        assert full.status_code == 409 and "SEMSEARCH_MAX_SNAPSHOTS" in full.text
        assert client.post("/collections/default/snapshots").status_code == 201
        hits = client.post("/collections/books/search", json={"query": "whales"}).json()["hits"]

        bad = client.delete("/collections/books/snapshots/..%2F..%2Fbooks")
        assert bad.status_code in (404, 422)
        assert client.delete("/collections/books/snapshots/not-a-snapshot").status_code == 422
        assert client.get("/collections/nope/snapshots").status_code == 404
        deleted = client.delete(f"/collections/books/snapshots/{snap['name']}")
        assert deleted.json() == {"deleted": snap["name"]}
        assert [
            s["name"] for s in client.get("/collections/books/snapshots").json()["snapshots"]
        ] == [second["name"]]
    # The snapshot is a collection: restored, it answers as the collection did when it was taken.
    restore(tmp_path / "snapshots" / "books" / second["name"], tmp_path / "restored")
    with make_client(fake_embedder, index_dir=tmp_path / "restored") as client:
        assert client.get("/count").json() == {"count": 1}
        assert client.post("/search", json={"query": "whales"}).json()["hits"] == hits


def test_a_field_index_is_declared_and_listed(make_client, fake_embedder):
    with make_client(fake_embedder) as client:
        client.post("/documents", json={"documents": BOOKS})
        made = client.post("/collections/default/field-indexes", json={"field": "year"})
        assert made.status_code == 201 and made.json() == {"field": "year", "created": True}
        again = client.post("/collections/default/field-indexes", json={"field": "year"})
        assert again.json()["created"] is False
        assert client.get("/collections/default/field-indexes").json() == {"fields": ["year"]}
        assert client.get("/count", params={"filter": '{"year": {"gt": 1900}}'}).json() == {
            "count": 1
        }
        bad = client.post("/collections/default/field-indexes", json={"field": "a..b"})
        assert bad.status_code == 422
        assert (
            client.post("/collections/nope/field-indexes", json={"field": "x"}).status_code == 404
        )


def test_a_collection_default_chunking_applies_unless_a_request_names_its_own(
    make_client, fake_embedder
):
    text = " ".join(f"word{i}" for i in range(200))  # about 600 tokens
    with make_client(fake_embedder) as client:
        bad = client.post("/collections", json={"name": "notes", "chunking": {"tokens": 999}})
        assert bad.status_code == 422 and client.get("/collections/notes").status_code == 404
        made = client.post(
            "/collections", json={"name": "notes", "chunking": {"tokens": 100, "overlap": 10}}
        )
        assert made.json()["chunking"] == {"tokens": 100, "overlap": 10}
        default = client.post(
            "/collections/notes/documents", json={"documents": [{"id": "a", "text": text}]}
        )
        own = client.post(
            "/collections/notes/documents",
            json={"documents": [{"id": "b", "text": text}], "chunking": {"tokens": 200}},
        )
        assert default.json()["chunks"] > own.json()["chunks"] > 1
        assert client.get("/collections/notes/documents/a").json()["text"] == text
        assert client.get("/collections/default").json()["chunking"] == {}


def test_the_listing_opens_no_collection(make_client, fake_embedder):
    with make_client(fake_embedder) as client:
        client.post("/collections", json={"name": "one", "chunking": {"tokens": 40}})
        client.post("/collections/one/documents", json={"documents": BOOKS})
    with make_client(fake_embedder, max_collections=2) as client:
        listed = {c["name"]: c for c in client.get("/collections").json()["collections"]}
        assert listed["default"]["loaded"] is True
        one = listed["one"]
        assert (one["loaded"], one["count"], one["factory"], one["tombstones"]) == (
            False,
            2,
            None,
            0,
        )
        assert one["chunking"] == {"tokens": 40} and one["bytes_on_disk"] > 0
        # Listing did not open it: a second collection still fits under the bound of 2.
        assert client.post("/collections", json={"name": "two"}).status_code == 201
        assert [c["name"] for c in client.get("/collections").json()["collections"]] == [
            "default",
            "one",
            "two",
        ]
        assert client.get("/collections/one").status_code == 429  # opening it would be a third
        opened = client.get("/collections/two").json()
        assert opened["loaded"] is True and opened["factory"] == "Flat"


def test_a_collection_dropped_through_another_worker_is_reopened_or_gone(
    make_client, fake_embedder
):
    """Two apps on one data directory, as `serve --workers 2` runs them: each sees the other's
    drop, and a re-created collection of the same name, when it next uses it."""
    with make_client(fake_embedder) as a, make_client(fake_embedder) as b:
        assert a.post("/collections", json={"name": "books"}).status_code == 201
        a.post("/collections/books/documents", json={"documents": BOOKS})
        assert b.get("/collections/books/count").json() == {"count": 2}  # b opens it
        assert a.delete("/collections/books").status_code == 200
        assert b.get("/collections/books/count").status_code == 404
        assert b.post("/collections/books/search", json={"query": "x"}).status_code == 404
        assert a.post("/collections", json={"name": "books"}).status_code == 201
        a.post("/collections/books/documents", json={"documents": BOOKS[:1]})
        assert b.get("/collections/books/count").json() == {"count": 1}  # the new one
        assert b.delete("/collections/books").status_code == 200
        assert a.get("/collections/books/count").status_code == 404


def test_a_drop_waits_for_the_requests_using_the_collection(make_client, fake_embedder):
    with make_client(fake_embedder) as client:
        client.post("/collections", json={"name": "books"})
        client.post("/collections/books/documents", json={"documents": BOOKS})
        registry = client.app.state.models.require_collections()
        held = registry.acquire("books")  # a request in flight
        dropping = threading.Thread(target=registry.drop, args=("books",))
        dropping.start()
        dropping.join(0.3)
        assert dropping.is_alive()  # waiting for the lease
        assert held.count() == 2  # the request goes on, on open files
        registry.release(held)
        dropping.join(5)
        assert not dropping.is_alive()
        assert client.get("/collections/books/count").status_code == 404


def test_an_unreadable_collection_is_left_out_of_the_listing(make_client, fake_embedder, tmp_path):
    with make_client(fake_embedder) as client:
        for name in ("good", "broken"):
            client.post("/collections", json={"name": name})
    (tmp_path / "collections" / "broken" / "manifest.json").write_text("{not json")
    with make_client(fake_embedder) as client:
        listed = client.get("/collections")
        assert listed.status_code == 200
        assert [c["name"] for c in listed.json()["collections"]] == ["default", "good"]
        broken = client.get("/collections/broken")
        assert broken.status_code == 409 and "server log" in broken.text
        assert str(tmp_path) not in broken.text


def test_the_default_collection_cannot_live_among_the_named_ones(tmp_path):
    from semsearch.service.settings import Settings

    with pytest.raises(ValueError, match="inside SEMSEARCH_COLLECTIONS_DIR"):
        Settings(index_dir=tmp_path / "cols" / "main", collections_dir=tmp_path / "cols")

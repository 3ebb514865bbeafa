"""The compressed index types (HNSW{M},SQ8, IVF{nlist},SQ8, IVF{nlist},PQ{m} and its Refine(...)
forms) through a collection's whole life: served from Flat until trainable, then trained and
built; upserts, replacements and deletes (removed for real or kept as tombstones); filtered search
through FAISS's id selector; snapshot and reopen; compaction; rebuilds to and from other types;
refusals; and acceptance by `semsearch index build --index-type` and `POST /collections`.

Small seeded random vectors: mechanics, not embedding quality (tests/conformance/
test_index_recall.py measures recall on real embeddings). Answers are checked against exact
search over the same vectors in numpy.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from semsearch.index import Collection, Doc, IndexConfig, InvalidArgument
from semsearch.index.config import normalize_type

DIM = 32
N = 800
# Thresholds lowered so 800 vectors train every type: IVF16 wants 16 * 39 = 624, PQ 256 * 2.
SMALL = {"nprobe": 16, "quantizer_min_train": 400, "ivf_min_train_per_list": 39}
PQ = {**SMALL, "ivf_min_train_per_list": 2}
TOMBS = {"compact_min": 10_000}  # no compaction unless a test asks for it
TYPES = {
    "HNSW16,SQ8": IndexConfig(index_type="HNSW16,SQ8", **SMALL, **TOMBS),
    "IVF16,SQ8": IndexConfig(index_type="IVF16,SQ8", **SMALL, **TOMBS),
    "IVF16,PQ8": IndexConfig(index_type="IVF16,PQ8", **PQ, **TOMBS),
    "IVF16,PQ8,Refine(SQ8)": IndexConfig(index_type="IVF16,PQ8,Refine(SQ8)", **PQ, **TOMBS),
    "IVF16,PQ8,Refine(Flat)": IndexConfig(index_type="IVF16,PQ8,Refine(Flat)", **PQ, **TOMBS),
}
KEEPS_TOMBSTONES = {"HNSW16,SQ8", "IVF16,PQ8,Refine(SQ8)", "IVF16,PQ8,Refine(Flat)"}
# Plain PQ ranks by its codes alone: its own vector is not always first, but always near, and
# its top 10 is further from the exact one.
SELF_RANK = {kind: 1 for kind in TYPES} | {"IVF16,PQ8": 5}
OVERLAP = {kind: 0.9 for kind in TYPES} | {"IVF16,PQ8": 0.6}


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def make_docs(n: int, seed: int = 0, start: int = 0) -> tuple[list[Doc], np.ndarray]:
    vectors = unit(np.random.default_rng(seed).standard_normal((n, DIM)))
    docs = [Doc(str(i), f"doc {i}", {"bucket": i % 10}) for i in range(start, start + n)]
    return docs, vectors


def self_rank_ok(col: Collection, vectors: np.ndarray, ids: range, kind: str, **kw) -> float:
    """Share of `ids` whose own vector finds them within SELF_RANK[kind]."""
    depth = SELF_RANK[kind]
    found = [str(i) in [h.id for h in col.search(vectors[i], k=depth, **kw)] for i in ids]
    return float(np.mean(found))


def built(
    path: Path, kind: str, config: IndexConfig | None = None
) -> tuple[Collection, np.ndarray]:
    """A collection of N documents of type `kind`, written in two batches (the first too small
    to train on), maintenance inline."""
    docs, vectors = make_docs(N)
    col = Collection.open(path, config=config or TYPES[kind], background=False)
    col.upsert(docs[:300], vectors[:300])
    assert col.info()["factory"] == "Flat"  # nothing to train on yet
    col.upsert(docs[300:], vectors[300:])
    return col, vectors


@pytest.mark.parametrize("kind", TYPES)
def test_serves_from_flat_until_trainable_then_builds_the_type(tmp_path: Path, kind: str) -> None:
    col, vectors = built(tmp_path / "c", kind)
    with col:
        info = col.info()
        assert info["factory"] == kind and info["index_type"] == kind and info["count"] == N
        assert self_rank_ok(col, vectors, range(0, N, 8), kind) == 1.0


@pytest.mark.parametrize("kind", TYPES)
def test_a_first_batch_big_enough_is_trained_on_directly(tmp_path: Path, kind: str) -> None:
    docs, vectors = make_docs(N)
    with Collection.open(tmp_path / "c", config=TYPES[kind], background=False) as col:
        col.upsert(docs, vectors)
        assert col.info()["factory"] == kind
        assert self_rank_ok(col, vectors, range(1, N, 8), kind) == 1.0


@pytest.mark.parametrize("kind", TYPES)
def test_deletes_and_replacements_are_never_found(tmp_path: Path, kind: str) -> None:
    col, vectors = built(tmp_path / "c", kind)
    with col:
        assert col.delete([str(i) for i in range(100)]) == 100
        new_docs, new_vectors = make_docs(50, seed=1, start=100)  # ids 100..149, new vectors
        col.upsert(new_docs, new_vectors)
        assert col.count() == N - 100
        info = col.info()
        assert info["factory"] == kind
        assert info["tombstones"] == (150 if kind in KEEPS_TOMBSTONES else 0)
        for i in range(0, 100, 5):  # a deleted vector finds its neighbours, not itself
            assert str(i) not in {h.id for h in col.search(vectors[i], k=20)}
        for j in range(50):  # a replaced document is found by its new vector only
            assert str(100 + j) in [h.id for h in col.search(new_vectors[j], k=SELF_RANK[kind])]
            assert str(100 + j) not in {h.id for h in col.search(vectors[100 + j], k=3)}
        assert self_rank_ok(col, vectors, range(150, N, 7), kind) == 1.0


@pytest.mark.parametrize("kind", TYPES)
def test_filtered_search_goes_through_the_selector(tmp_path: Path, kind: str) -> None:
    # exact_filter_max=0: even a small matching set is searched by FAISS with an id selector.
    config = dataclasses.replace(TYPES[kind], exact_filter_max=0)
    col, vectors = built(tmp_path / "c", kind, config)
    with col:
        col.delete([str(i) for i in range(0, N, 20)])  # some of bucket 0, none of bucket 3
        live3 = np.array([i for i in range(3, N, 10)])
        overlap = []
        for i in range(0, N, 37):
            hits = col.search(vectors[i], k=10, filter={"bucket": 3})
            assert len(hits) == 10 and all(h.metadata["bucket"] == 3 for h in hits)
            exact = live3[np.argsort(-(vectors[live3] @ vectors[i]))[:10]]
            overlap.append(len({int(h.id) for h in hits} & set(exact.tolist())) / 10)
            hits0 = col.search(vectors[i], k=10, filter={"bucket": 0})
            assert all(int(h.id) % 20 and h.metadata["bucket"] == 0 for h in hits0)
        assert np.mean(overlap) >= OVERLAP[kind]
        assert self_rank_ok(col, vectors, range(3, N, 30), kind, filter={"bucket": 3}) == 1.0


@pytest.mark.parametrize("kind", TYPES)
def test_a_snapshot_reopens_as_the_same_index(tmp_path: Path, kind: str) -> None:
    col, vectors = built(tmp_path / "c", kind)
    with col:
        col.delete([str(i) for i in range(0, 60)])
        before = [[(h.id, h.score) for h in col.search(vectors[i], k=10)] for i in range(0, N, 9)]
        tombstones = col.info()["tombstones"]
    with Collection.open(tmp_path / "c", config=TYPES[kind]) as again:
        info = again.info()
        # Tombstones survive only in a loaded snapshot: a rebuild from SQLite would have none.
        assert info["factory"] == kind and info["tombstones"] == tombstones
        after = [[(h.id, h.score) for h in again.search(vectors[i], k=10)] for i in range(0, N, 9)]
    assert after == before


@pytest.mark.parametrize("kind", sorted(KEEPS_TOMBSTONES))
def test_tombstones_past_the_ratio_are_compacted(tmp_path: Path, kind: str) -> None:
    config = dataclasses.replace(TYPES[kind], compact_min=50, compact_ratio=0.1)
    col, vectors = built(tmp_path / "c", kind, config)
    with col:
        col.delete([str(i) for i in range(40)])
        assert col.info()["tombstones"] == 40  # under compact_min
        col.delete([str(i) for i in range(40, 200)])
        info = col.info()
        assert info["factory"] == kind and info["tombstones"] == 0 and info["count"] == N - 200
        for i in range(0, 200, 10):
            assert str(i) not in {h.id for h in col.search(vectors[i], k=20)}
        assert self_rank_ok(col, vectors, range(200, N, 9), kind) == 1.0


@pytest.mark.parametrize("kind", TYPES)
def test_rebuilds_from_and_to_another_type(tmp_path: Path, kind: str) -> None:
    docs, vectors = make_docs(N)
    with Collection.open(tmp_path / "c", config=IndexConfig(index_type="Flat")) as col:
        col.upsert(docs, vectors)
    with Collection.open(tmp_path / "c", config=TYPES[kind]) as col:
        col.wait_idle()  # the background rebuild to the new type
        assert col.info()["factory"] == kind
        assert self_rank_ok(col, vectors, range(2, N, 9), kind) == 1.0
    with Collection.open(tmp_path / "c", index_type="Flat") as col:
        col.wait_idle()
        assert col.info()["factory"] == "Flat"
        top = np.argsort(-(vectors @ vectors[5]))[:10]
        assert [int(h.id) for h in col.search(vectors[5], k=10)] == top.tolist()


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("hnsw32,sq8", "HNSW32,SQ8"),
        ("HNSW32,Flat", "HNSW32"),
        ("IVF1024,sq8", "IVF1024,SQ8"),
        ("IVF1024, PQ48", "IVF1024,PQ48"),
        ("IVF1024,PQ48,RFlat", "IVF1024,PQ48,Refine(Flat)"),
        ("ivf1024,pq48,refine(sq8)", "IVF1024,PQ48,Refine(SQ8)"),
        ("IVF,Flat", "IVF"),
    ],
)
def test_types_are_spelled_one_way(text: str, canonical: str) -> None:
    assert normalize_type(text) == canonical
    assert IndexConfig(index_type=text).index_type == canonical


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("IVF,SQ8", "IVF<nlist>,SQ8"),  # no auto-sized lists for compressed types
        ("IVF16,SQ8,Refine(SQ8)", "follows PQ<m>"),
        ("IVF16,Flat,RFlat", "follows PQ<m>"),
        ("IVF0,SQ8", "at least 1"),
        ("HNSW32,PQ8", "HNSW<M>,SQ8"),
        ("IVF16,PQ8,Refine(PQ4)", "unknown index type"),
    ],
)
def test_unsupported_combinations_are_refused_with_the_fix(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says.replace("(", r"\(").replace(")", r"\)")):
        normalize_type(text)


def test_pq_that_does_not_divide_the_dimension_is_refused_before_any_write(tmp_path: Path) -> None:
    docs, vectors = make_docs(10)
    config = IndexConfig(index_type="IVF16,PQ7")
    with Collection.open(tmp_path / "c", config=config) as col:
        with pytest.raises(InvalidArgument, match=r"not a multiple of 7.*\[8, 16, 32\]"):
            col.upsert(docs, vectors)
        assert col.count() == 0


def test_index_build_accepts_the_compressed_types(tmp_path: Path, fake_embedder) -> None:
    from semsearch.cli.exits import UsageError
    from semsearch.cli.index import _build_options
    from semsearch.cli.main import build_parser
    from semsearch.index.ingest.pipeline import build_index

    def options(index_type: str):
        args = build_parser().parse_args(["index", "build", "x.jsonl", "--index-type", index_type])
        return _build_options(args)

    with pytest.raises(UsageError, match="IVF<nlist>,PQ48"):
        options("IVF,PQ48")
    chosen = options("ivf16,pq48,refine(sq8)")
    assert chosen.index_type == "ivf16,pq48,refine(sq8)"  # normalized when the collection opens
    src = tmp_path / "in.jsonl"
    src.write_text("".join(f'{{"id": "d{i}", "text": "note {i} on whales"}}\n' for i in range(700)))
    # Thresholds lowered so 700 documents train it: PQ's 256 centroids, 100 for SQ8's ranges.
    few = {"quantizer_min_train": 100, "ivf_min_train_per_list": 1}
    opts = dataclasses.replace(chosen, index_options=few)
    build_index([src], tmp_path / "idx", fake_embedder, opts)
    with Collection.open(tmp_path / "idx", read_only=True) as col:
        assert col.info()["factory"] == "IVF16,PQ48,Refine(SQ8)" and col.count() == 700


def test_post_collections_accepts_and_refuses_types(make_client, fake_embedder) -> None:
    with make_client(fake_embedder) as client:
        made = client.post("/collections", json={"name": "q", "index_type": "hnsw16,sq8"})
        assert made.status_code == 201, made.text
        assert made.json()["index_type"] == "HNSW16,SQ8" and made.json()["factory"] == "Flat"
        bad = client.post("/collections", json={"name": "r", "index_type": "IVF,PQ48"})
        assert bad.status_code == 422 and "IVF<nlist>,PQ48" in bad.text

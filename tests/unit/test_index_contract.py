"""The collection contract, one battery run against every store and index type (txtai
`testdense.py` style): the local store with each FAISS index type, and the Qdrant store in
qdrant-client's in-process mode (a shared in-memory client stands for the server, so a "reopen"
is a second handle on the same data).

Small seeded random vectors: these tests check mechanics (ids, replace, delete, persistence,
catch-up, refusal), not embedding quality; tests/conformance/test_index_recall.py uses real
embeddings. The tests that are about FAISS and the local directory (snapshots, tombstones, the
manifest, catch-up after a crash) run on the local store only.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from semsearch.index import (
    Collection,
    DimensionMismatch,
    Doc,
    FilterError,
    FingerprintMismatch,
    FormatError,
    IndexConfig,
    InvalidArgument,
    NotFound,
    ReadOnlyError,
)
from semsearch.index.backend import CollectionBackend
from semsearch.index.persistence import SNAPSHOT

DIM = 32
N = 800  # IVF16 trains from 16 * 39 = 624 vectors
TYPES = {
    "Flat": IndexConfig(index_type="Flat"),
    "HNSW32": IndexConfig(index_type="HNSW32", compact_min=50, compact_ratio=0.1),
    "IVF16": IndexConfig(index_type="IVF16,Flat", nprobe=16),
    "auto": IndexConfig(index_type="auto", flat_max=400),  # switches to HNSW32 past 400
}
EXPECTED_FACTORY = {"Flat": "Flat", "HNSW32": "HNSW32", "IVF16": "IVF16,Flat", "auto": "HNSW32"}
BACKENDS = [*TYPES, "qdrant"]  # the local store with each index type, and the Qdrant store

# In-process Qdrant builds no payload indexes and says so once; the collection asks for them.
pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect")


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def make_docs(n: int, seed: int = 0) -> tuple[list[Doc], np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = unit(rng.standard_normal((n, DIM)))
    docs = [
        Doc(f"d{i}", f"text {i}", {"i": i, "group": i % 5, "odd": bool(i % 2)}) for i in range(n)
    ]
    return docs, vectors


@dataclass
class Store:
    """Opens collection "c" on one backend: a local index type (`TYPES`) or "qdrant"."""

    backend: str
    root: Path
    qdrant: Any = None  # the in-process client every Qdrant handle of the test shares

    @property
    def is_qdrant(self) -> bool:
        return self.backend == "qdrant"

    def open(self, name: str = "c", config: IndexConfig | None = None, **kw: Any) -> Any:
        """A handle; `config` (local only) tunes the FAISS index, default the stored one."""
        if self.is_qdrant:
            from semsearch.index.qdrant import QdrantCollection

            return QdrantCollection.open(name, client=self.qdrant, **kw)
        return Collection.open(self.root / name, config=config, **kw)

    def create(self, name: str = "c", **kw: Any) -> Any:
        """A new collection, with the backend's index type."""
        return self.open(name, config=None if self.is_qdrant else TYPES[self.backend], **kw)


def make_store(backend: str, root: Path) -> Iterator[Store]:
    if backend != "qdrant":
        yield Store(backend, root)
        return
    qdrant_client = pytest.importorskip("qdrant_client")
    client = qdrant_client.QdrantClient(location=":memory:")
    try:
        yield Store(backend, root, client)
    finally:
        client.close()


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from make_store(request.param, tmp_path)


@pytest.fixture(params=["local", "qdrant"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """One per store (the local one with its default index type), for tests of the interface
    that do not depend on the index type."""
    yield from make_store("auto" if request.param == "local" else "qdrant", tmp_path)


@pytest.fixture(params=list(TYPES))
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


def fill(store: Store) -> np.ndarray:
    docs, vectors = make_docs(N)
    with store.create() as col:
        # Two batches: the first fits Flat, the second makes "auto" and IVF switch type.
        col.upsert(docs[:300], vectors[:300])
        col.upsert(docs[300:], vectors[300:])
        if not store.is_qdrant:
            col.wait_idle()  # the switch is rebuilt in the background
            assert col.info()["factory"] == EXPECTED_FACTORY[store.backend]
    return vectors


@pytest.fixture
def filled(store: Store) -> tuple[Store, np.ndarray]:
    """Every backend, with N documents written in two batches."""
    return store, fill(store)


@pytest.fixture
def filled_local(tmp_path: Path, kind: str) -> tuple[Path, IndexConfig, np.ndarray]:
    """The local store of each index type, with N documents; its directory."""
    vectors = fill(Store(kind, tmp_path))
    return tmp_path / "c", TYPES[kind], vectors


def test_upsert_get_count_search(filled: tuple[Store, np.ndarray]) -> None:
    store, vectors = filled
    with store.open() as col:
        assert col.count() == N
        assert col.get("d7") == Doc("d7", "text 7", {"i": 7, "group": 2, "odd": True})
        assert col.get("nope") is None
        for i in (0, 123, 799):
            hits = col.search(vectors[i], k=5)
            assert len(hits) == 5
            assert hits[0].id == f"d{i}" and hits[0].score == pytest.approx(1.0, abs=1e-5)
            assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        assert len(col.search(vectors[0], k=2 * N)) == N  # k past the count: everything, once


def test_replace_and_delete(filled: tuple[Store, np.ndarray]) -> None:
    store, vectors = filled
    with store.open() as col:
        # d1 takes d2's vector: d2's query now finds both, d1's old vector finds nothing stale.
        col.upsert([{"id": "d1", "text": "new", "metadata": {"v": 2}}], vectors[2])
        assert col.get("d1") == Doc("d1", "new", {"v": 2})
        top = {h.id for h in col.search(vectors[2], k=2)}
        assert top == {"d1", "d2"}
        assert all(h.id != "d1" for h in col.search(vectors[1], k=3))
        assert col.delete(["d3", "d4", "missing", "d3"]) == 2
        assert col.count() == N - 2 and col.get("d3") is None
        assert all(h.id not in ("d3", "d4") for h in col.search(vectors[3], k=10))
        assert len(col.search(vectors[3], k=N)) == N - 2
    with store.open() as col:  # and all of it persisted
        assert col.count() == N - 2 and col.get("d1").text == "new"
        assert all(h.id != "d3" for h in col.search(vectors[3], k=10))


def test_filtered_search_returns_k_whenever_k_match(filled: tuple[Store, np.ndarray]) -> None:
    store, vectors = filled
    small = None  # exact_filter_max=16 forces the FAISS-selector path for larger subsets too
    if not store.is_qdrant:
        small = IndexConfig.from_dict({**TYPES[store.backend].to_dict(), "exact_filter_max": 16})
    with store.open(config=small) as col:
        for flt, matching in [
            ({"i": {"lt": 7}}, 7),
            ({"group": 3}, N // 5),
            ({"group": {"in": [1, 2]}, "odd": True}, N // 5),
            ({"i": {"gte": 100, "lt": 140}}, 40),
        ]:
            for q in (0, 401):
                hits = col.search(vectors[q], k=10, filter=flt)
                assert len(hits) == min(10, matching), flt
                assert len({h.id for h in hits}) == len(hits)
        assert col.search(vectors[0], k=10, filter={"group": 99}) == []


def test_filtered_results_follow_writes(filled: tuple[Store, np.ndarray]) -> None:
    """Repeated filters are cached per store sequence; a write must show up at once."""
    store, vectors = filled
    with store.open() as col:
        flt = {"group": 4, "i": {"lt": 100}}
        before = [h.id for h in col.search(vectors[0], k=5, filter=flt)]
        assert "d0" not in before and len(before) == 5
        col.upsert([Doc("d0", "moved", {"group": 4, "i": 0})], vectors[0])
        assert col.search(vectors[0], k=5, filter=flt)[0].id == "d0"
        col.delete(["d0"])
        assert [h.id for h in col.search(vectors[0], k=5, filter=flt)] == before


def test_hnsw_tombstones_then_compaction(tmp_path: Path) -> None:
    docs, vectors = make_docs(N)
    with Collection.open(tmp_path / "c", config=TYPES["HNSW32"]) as col:
        col.upsert(docs, vectors)
        col.delete([f"d{i}" for i in range(40)])  # under compact_min=50: tombstoned
        assert col.info()["tombstones"] == 40
        assert all(int(h.id[1:]) >= 40 for h in col.search(vectors[5], k=20))
        col.delete([f"d{i}" for i in range(40, 100)])  # past it: rebuilt without them
        assert col.wait_idle(timeout_s=30)  # in the background
        assert col.info()["tombstones"] == 0 and col.count() == N - 100
        assert len(col.search(vectors[5], k=10)) == 10


def test_other_format_version_is_refused(tmp_path: Path) -> None:
    docs, vectors = make_docs(5)
    with Collection.open(tmp_path / "c") as col:
        col.upsert(docs, vectors)
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    (tmp_path / "c" / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(FormatError, match="format version 99.*Rebuild"):
        Collection.open(tmp_path / "c")


def test_score_threshold(filled: tuple[Store, np.ndarray]) -> None:
    store, vectors = filled
    with store.open() as col:
        hits = col.search(vectors[5], k=20, score_threshold=0.3)
        assert hits and all(h.score >= 0.3 for h in hits)
        assert col.search(vectors[5], k=20, score_threshold=1.01) == []


def test_catch_up_after_unclean_exit(
    filled_local: tuple[Path, IndexConfig, np.ndarray],
) -> None:
    path, _, vectors = filled_local
    col = Collection.open(path)
    rng = np.random.default_rng(1)
    extra = unit(rng.standard_normal((60, DIM)))
    col.upsert([Doc(f"x{i}", "x", {}) for i in range(60)], extra)
    col.delete([f"d{i}" for i in range(30)])
    # No close(): the snapshot on disk predates these writes, as after kill -9.
    with Collection.open(path) as fresh:
        assert fresh.count() == N + 60 - 30
        assert fresh.search(extra[7], k=1)[0].id == "x7"
        assert all(
            not h.id.startswith("d") or int(h.id[1:]) >= 30 for h in fresh.search(vectors[3])
        )
    col.store.close()


@pytest.mark.parametrize("damage", ["truncate", "flip", "version", "delete"])
def test_damaged_snapshot_is_rebuilt(
    filled_local: tuple[Path, IndexConfig, np.ndarray], damage: str
) -> None:
    path, _, vectors = filled_local
    snap = path / SNAPSHOT
    raw = snap.read_bytes()
    if damage == "truncate":
        snap.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip":
        snap.write_bytes(raw[:-100] + bytes([raw[-100] ^ 0xFF]) + raw[-99:])
    elif damage == "version":
        snap.write_bytes(raw.replace(b'"format_version": 1', b'"format_version": 9', 1))
    else:
        snap.unlink()
    (path / f".{SNAPSHOT}.12345.tmp").write_bytes(raw[:100])  # a writer killed mid-save
    with Collection.open(path) as col:
        assert col.count() == N
        assert col.search(vectors[42], k=1)[0].id == "d42"
    assert snap.read_bytes() != raw[: len(raw) // 2]  # a fresh snapshot was written
    assert not list(path.glob(".*.tmp"))


def test_wrong_dimension_and_encoder_are_refused(any_store: Store) -> None:
    store = any_store
    fp = {"weights_sha256": "aa", "vocab_sha256": "bb", "dim": DIM, "backend": "torch"}
    docs, vectors = make_docs(10)
    with store.open(dim=DIM, encoder_fingerprint=fp) as col:
        col.upsert(docs, vectors)
        with pytest.raises(DimensionMismatch, match="dimension 16"):
            col.upsert([Doc("z", "z")], np.ones((1, 16), np.float32))
        with pytest.raises(DimensionMismatch):
            col.search(np.ones(16, np.float32))
    # What to do about it: rebuild locally; on Qdrant, embed into another collection.
    remedy = "another collection" if store.is_qdrant else "--reindex"
    with pytest.raises(DimensionMismatch, match=remedy):
        store.open(dim=64)
    other = {**fp, "weights_sha256": "cc"}
    with pytest.raises(FingerprintMismatch, match=f"weights_sha256: 'aa' -> 'cc'.*{remedy}"):
        store.open(encoder_fingerprint=other)
    with store.open(dim=DIM, encoder_fingerprint=fp) as col:
        assert col.count() == 10  # the same encoder is welcome
        assert col.info()["encoder_fingerprint"] == fp and col.info()["dim"] == DIM


def test_invalid_arguments(any_store: Store) -> None:
    store = any_store
    docs, vectors = make_docs(5)
    with store.open() as col:
        col.upsert(docs, vectors)
        for bad in ({"i": {"like": 3}}, {"i": {"in": []}}, {"i": {"gt": True}}, {"i": [1]}, [1]):
            with pytest.raises(FilterError):
                col.search(vectors[0], filter=bad)
            with pytest.raises(FilterError):
                col.count(bad)
        with pytest.raises(FilterError, match="at least one condition"):
            col.delete_where({})
        with pytest.raises(InvalidArgument):
            col.search(vectors[0], k=0)
        with pytest.raises(InvalidArgument):
            col.upsert(docs[:2], vectors[:1])
        with pytest.raises(ValueError):  # InvalidDocument: no text
            col.upsert([{"id": "x"}], vectors[:1])
        ids = col.upsert([{"text": "no id"}], vectors[:1])
        assert col.get(ids[0]).text == "no id"
    with pytest.raises(NotFound):
        store.open("absent", read_only=True)
    with store.open(read_only=True) as ro, pytest.raises(ReadOnlyError):
        ro.delete(["d0"])


def test_every_backend_is_a_collection_backend(any_store: Store) -> None:
    with any_store.open() as col:
        assert isinstance(col, CollectionBackend)


def test_delete_by_ids_and_by_filter_count_what_was_stored(any_store: Store) -> None:
    docs, vectors = make_docs(50)
    with any_store.open() as col:
        col.upsert(docs, vectors)
        assert col.delete(["d1", "d2", "d2", "nope"]) == 2
        assert col.delete_where({"group": 3}) == 10
        assert col.delete_where({"group": 3}) == 0
        assert col.count() == 38 and col.count({"odd": True}) == 19
        assert col.get("d3") is None and col.get("d4") == docs[4]


def test_families_and_chunks(any_store: Store) -> None:
    """A document stored whole or as chunks `<id>#chunk-<n>`: writing it again with `families`
    replaces every earlier form; deleting with `families=True` takes its chunks too."""
    _, vectors = make_docs(8)
    with any_store.open() as col:
        chunks = [Doc(f"p#chunk-{n}", f"part {n}", {"parent_id": "p"}) for n in (0, 1, 2, 10)]
        col.upsert([*chunks, Doc("q", "q whole")], vectors[:5], ["p", "q"])
        col.upsert([Doc("p#chunk-1#chunk-0", "a chunk of a chunk")], vectors[5:6])
        assert [d.id for d in col.chunks_of("p")] == [f"p#chunk-{n}" for n in (0, 1, 2, 10)]
        assert set(col.families(["p", "q", "zz"])) == {
            "p#chunk-0", "p#chunk-1", "p#chunk-2", "p#chunk-10", "q",
        }  # fmt: skip
        assert set(col.families(["p#chunk-1"])) == {"p#chunk-1", "p#chunk-1#chunk-0"}
        col.upsert([Doc("p", "whole now")], vectors[6:7], ["p"])  # the chunks go
        col.upsert([Doc("q#chunk-0", "a"), Doc("q#chunk-1", "b")], vectors[:2], ["q"])
        assert set(col.families(["p", "q"])) == {"p", "q#chunk-0", "q#chunk-1"}
        assert col.chunks_of("p") == [] and col.get("q") is None
        assert col.delete(["q"], families=True) == 2
        assert col.delete(["p"]) == 1  # without families: the id alone
        assert sorted(d.id for d in col.scroll("", 10)) == ["p#chunk-1#chunk-0"]


@pytest.mark.parametrize("flt", [None, {"odd": True}])
def test_scroll_returns_every_document_stored_throughout_once(
    any_store: Store, flt: dict[str, Any] | None
) -> None:
    """Writes between pages (deletes, inserts, replacements) never repeat or skip a document
    that was stored throughout; the cursor is the last id of a page."""
    docs, vectors = make_docs(300)
    with any_store.open() as col:
        col.upsert(docs, vectors)
        seen: list[str] = []
        after, deleted, pages = "", set(), 0
        while page := col.scroll(after, 37, flt):
            assert len(page) <= 37 and all(flt is None or d.metadata["odd"] for d in page)
            seen += [d.id for d in page]
            after, pages = page[-1].id, pages + 1
            gone = [f"d{(pages * 41) % 300}", page[0].id]  # one maybe not seen yet, one seen
            deleted.update(d for d in gone if col.delete([d]))
            col.upsert([Doc(f"new{pages}", "t", {"odd": True}), docs[pages]], vectors[:2])
        assert len(seen) == len(set(seen)) and pages >= 4
        throughout = {d.id for d in docs if flt is None or d.metadata["odd"]} - deleted
        assert throughout <= set(seen)


def test_concurrent_readers_during_writes(tmp_path: Path, kind: str) -> None:
    """Readers (in-process and a second handle, as another process) never see a half-write."""
    n, rounds = 200, 15
    rng = np.random.default_rng(3)
    base = unit(rng.standard_normal((n, DIM)))
    drift = unit(rng.standard_normal(DIM))

    def version(v: int) -> np.ndarray:
        return unit(base + 0.05 * v * drift)

    path = tmp_path / "c"
    col = Collection.open(path, config=TYPES[kind])
    col.upsert([Doc(f"d{i}", f"d{i} v0", {"v": 0}) for i in range(n)], version(0))
    other = Collection.open(path, read_only=True)
    errors: list[str] = []
    stop = threading.Event()

    def read(handle: Collection) -> None:
        while not stop.is_set():
            q = base[int(rng.integers(n))]
            hits = handle.search(q, k=10)
            if len({h.id for h in hits}) != len(hits) or len(hits) != 10:
                errors.append(f"bad hit list {[h.id for h in hits]}")
            for h in hits:
                v = h.metadata["v"]
                # The score must come from the vector of the version the text/metadata say.
                expected = float(version(v)[int(h.id[1:])] @ unit(q))
                if h.text != f"{h.id} v{v}" or abs(h.score - expected) > 1e-4:
                    errors.append(f"{h.id}: text {h.text!r}, v{v}, {h.score} vs {expected}")

    readers = [threading.Thread(target=read, args=(h,)) for h in (col, col, other)]
    for t in readers:
        t.start()
    for v in range(1, rounds + 1):
        col.upsert([Doc(f"d{i}", f"d{i} v{v}", {"v": v}) for i in range(n)], version(v))
    stop.set()
    for t in readers:
        t.join()
    assert not errors, errors[:5]
    assert other.count() == n and other.search(base[0], k=1)[0].metadata["v"] == rounds
    other.close()
    col.close()


def test_manifest_records_what_it_should(
    filled_local: tuple[Path, IndexConfig, np.ndarray],
) -> None:
    path, config, _ = filled_local
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format_version"] == 1 and manifest["dim"] == DIM
    assert manifest["metric"] == "cosine" and manifest["index"]["index_type"] == config.index_type
    with Collection.open(path, read_only=True) as col:
        info = col.info()
    assert info["count"] == N and info["bytes_on_disk"] > N * DIM * 4

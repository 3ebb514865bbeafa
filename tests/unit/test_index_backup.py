"""Backup and restore: every document and every search come back as they were, and a backup
taken while another handle writes is one consistent state of the collection."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from semsearch.index import Collection, Doc, IndexConfig, InvalidArgument
from semsearch.index.backup import backup, restore

DIM = 16


def vectors(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def everything(col: Collection) -> dict[str, Doc]:
    return {d.id: d for page in col.iter_docs() for d in page}


def test_restore_gives_back_every_document_and_the_same_search(tmp_path: Path):
    source = tmp_path / "c"
    docs = [Doc(f"d{i}", f"text {i}", {"n": i, "tags": ["a", str(i % 3)]}) for i in range(500)]
    queries = vectors(5, 99)
    with Collection.open(source, config=IndexConfig(index_type="HNSW32")) as col:
        col.upsert(docs, vectors(500, 1))
        col.delete([f"d{i}" for i in range(0, 500, 7)])
        col.upsert([Doc("d1", "replaced", {"n": -1})], vectors(1, 2))
        before = everything(col)
        searches = [col.search(q, k=10, filter={"n": {"gte": 10}}) for q in queries]
        info = col.info()

    report = backup(source, tmp_path / "backup")
    assert report.documents == len(before)
    restored = restore(tmp_path / "backup", tmp_path / "restored")
    assert restored.documents == len(before)
    with Collection.open(tmp_path / "restored") as col:
        assert everything(col) == before
        assert [col.search(q, k=10, filter={"n": {"gte": 10}}) for q in queries] == searches
        assert col.info()["factory"] == info["factory"]
        assert col.info()["encoder_fingerprint"] == info["encoder_fingerprint"]
        col.upsert([Doc("new", "written after the restore")], vectors(1, 3))  # it is writable
    with Collection.open(source) as col:
        assert everything(col) == before  # the source is untouched


def test_a_backup_while_another_handle_writes_is_one_consistent_state(tmp_path: Path):
    source = tmp_path / "c"
    batch = 50
    with Collection.open(source) as col:
        col.upsert([Doc(f"b0-{j}", "0", {"batch": 0}) for j in range(batch)], vectors(batch, 0))
    stop = threading.Event()
    written = [1]

    def write() -> None:
        # Each upsert is one transaction of `batch` documents: a consistent copy holds whole
        # batches only, and every document's text, metadata and vector agree with its batch.
        with Collection.open(source) as writer:
            while not stop.is_set() and written[0] < 60:
                b = written[0]
                docs = [Doc(f"b{b}-{j}", str(b), {"batch": b}) for j in range(batch)]
                writer.upsert(docs, vectors(batch, b))
                writer.delete([f"b{b - 1}-0"])  # and a delete after each batch
                written[0] += 1

    thread = threading.Thread(target=write)
    thread.start()
    try:
        copies = []
        while len(copies) < 3 or (written[0] < 60 and len(copies) < 30):
            copies.append(backup(source, tmp_path / f"backup{len(copies)}"))
    finally:
        stop.set()
        thread.join()
    assert len({report.documents for report in copies}) > 2  # copies of different states
    for i, report in enumerate(copies):
        restore(report.directory, tmp_path / f"restored{i}")
        with Collection.open(tmp_path / f"restored{i}") as col:
            docs = everything(col)
            batches = {d.metadata["batch"] for d in docs.values()}
            assert batches == set(range(len(batches)))  # a prefix of the batches
            for b in batches:
                members = {j for j in range(batch) if f"b{b}-{j}" in docs}
                deleted_first = b + 1 in batches or f"b{b}-0" not in docs
                assert members == set(range(deleted_first, batch)) or members == set(
                    range(batch)
                ), b
                assert all(docs[f"b{b}-{j}"].text == str(b) for j in members)
            # The vectors: each document's own, found by searching for it.
            probe = vectors(batch, max(batches))
            hits = col.search(probe[5], k=1)
            assert hits[0].id == f"b{max(batches)}-5" and hits[0].score == pytest.approx(1.0)


def test_backup_and_restore_refuse_to_overwrite_or_to_copy_a_non_collection(tmp_path: Path):
    with Collection.open(tmp_path / "c") as col:
        col.upsert([Doc("a", "x")], vectors(1, 0))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(InvalidArgument, match="not an empty directory"):
        backup(tmp_path / "c", tmp_path / "full")
    with pytest.raises(InvalidArgument, match="not an empty directory"):
        restore(tmp_path / "c", tmp_path / "full")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    with pytest.raises(InvalidArgument, match="not a collection"):
        backup(tmp_path / "full", tmp_path / "b")
    with pytest.raises(InvalidArgument, match="not a collection"):
        restore(tmp_path / "full", tmp_path / "r")
    assert not (tmp_path / "r").exists()

"""`index build` into the Qdrant store: the same pipeline writes through the collection interface
(index/backend.py), so a build into Qdrant stores what a local build stores, resumes without
embedding again, re-embeds what changed and `--sync` deletes what the inputs no longer hold.
Qdrant is qdrant-client's in-process mode, on one client the test shares (no server here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fakes import WordHashEmbedder
from index_inputs import write_jsonl

from semsearch.index import Collection
from semsearch.index.ingest.pipeline import BuildOptions, build_index
from semsearch.index.ingest.targets import QdrantTarget
from semsearch.index.qdrant import QdrantCatalog

ROWS = [
    {"id": f"r{i}", "text": f"record {i} about topic {i % 3}", "metadata": {"n": i}}
    for i in range(40)
] + [{"id": "long", "text": " ".join(f"w{i}" for i in range(600))}]  # chunked


class InProcessTarget(QdrantTarget):
    """Opens its collection on the test's in-process client instead of a server."""

    catalog: QdrantCatalog

    def open(self, embedder=None, read_only=False):
        return self.catalog.open(
            self.collection,
            dim=embedder.dim if embedder is not None else None,
            encoder_fingerprint=embedder.fingerprint() if embedder is not None else None,
            read_only=read_only,
        )


@pytest.fixture
def target():
    catalog = QdrantCatalog(location=":memory:")
    made = InProcessTarget("docs", "http://unused")
    object.__setattr__(made, "catalog", catalog)
    yield made
    catalog.close()


def stored(col) -> dict[str, tuple[str, dict]]:
    out = {}
    for ids in col.iter_ids():
        for doc in col.families(ids).values():
            out[doc.id] = (doc.text, doc.metadata)
    return out


def test_a_build_into_qdrant_stores_what_a_local_build_stores(tmp_path: Path, target):
    source = write_jsonl(tmp_path / "in.jsonl", ROWS)
    embedder = WordHashEmbedder()
    local = build_index([source], tmp_path / "local", embedder)
    remote = build_index([source], tmp_path / "unused", embedder, BuildOptions(store=target))
    assert (remote.added, remote.count) == (local.added, local.count)
    assert not (tmp_path / "unused").exists()
    with Collection.open(tmp_path / "local", read_only=True) as a, target.open() as b:
        assert stored(a) == stored(b)
        query = embedder.encode(["record 7 about topic 1"])[0]
        hits_a, hits_b = a.search(query, 5), b.search(query, 5)
        assert hits_a[0].id == hits_b[0].id == "r7"  # the rest tie on these bag-of-words vectors
        assert np.allclose([h.score for h in hits_a], [h.score for h in hits_b], atol=1e-5)


def test_a_build_into_qdrant_resumes_updates_and_syncs(tmp_path: Path, target):
    embedder = WordHashEmbedder()
    source = write_jsonl(tmp_path / "in.jsonl", ROWS)
    build_index([source], tmp_path / "x", embedder, BuildOptions(store=target))
    embedder.calls.clear()
    again = build_index([source], tmp_path / "x", embedder, BuildOptions(store=target))
    assert again.added == 0 and embedder.calls == []  # every record stored as read
    changed = [{**ROWS[0], "text": "a new text"}, *ROWS[1:10]]
    write_jsonl(source, changed)
    synced = build_index([source], tmp_path / "x", embedder, BuildOptions(store=target, sync=True))
    assert synced.updated == 1 and synced.deleted == len(ROWS) - 10
    with target.open() as col:
        assert col.get("r0").text == "a new text" and col.count() == 10


def test_local_index_settings_are_refused_for_qdrant(target):
    with pytest.raises(ValueError, match="local store"):
        BuildOptions(store=target, index_type="HNSW32")
    with pytest.raises(ValueError, match="local store"):
        BuildOptions(store=target, reindex=True)

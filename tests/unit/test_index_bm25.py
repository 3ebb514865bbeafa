"""Keyword search scored in memory (index/bm25.py) against FTS5's own `bm25()` on the same index.

The reference is SQLite: `-bm25(keywords)` over a MATCH of the query's kept terms (the rule of
tests/bm25_reference.py), ordered by score then vid, read from the collection's file by a
connection of its own. Compared: the ids, their order, and every score to 1e-12 relative, after
writes by the searching handle and by another one (replacements, deletes, many new documents, a
saved snapshot that prunes the tombstones a catch-up needs, a rebuilt keyword index), with the
postings cache big and too small to hold one query's terms.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from semsearch.index import Collection, Doc, IndexConfig, bm25
from semsearch.index.keywords import query_terms
from semsearch.index.persistence import DATABASE

DIM = 8


def vectors(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


WORDS = [f"w{i}" for i in range(60)] + ["ip-netconf", "o_direct", "--dry-run", "common"]


def random_text(rng: random.Random) -> str:
    # Zipf-like: low-numbered words are frequent, so some terms are in half the documents.
    words = [WORDS[min(int(rng.paretovariate(0.8)) - 1, len(WORDS) - 1)] for _ in range(12)]
    return " ".join(words + ["common"] * rng.randint(0, 2))


def fts5_ranking(directory: Path, query: str, limit: int) -> list[tuple[str, float]]:
    con = sqlite3.connect(directory / DATABASE)
    try:
        terms = query_terms(query)
        n = con.execute("SELECT count(*) FROM keywords_docsize").fetchone()[0]
        df = {}
        for t in terms:
            row = con.execute("SELECT doc FROM keywords_vocab WHERE term = ?", (t,)).fetchone()
            df[t] = row[0] if row else 0
        kept = [t for t in terms if 0 < 2 * df[t] < n]
        kept = kept if len(terms) > 1 and kept else [t for t in terms if df[t] > 0]
        if not kept:
            return []
        match = " OR ".join(f'"{t}"' for t in kept)
        rows = con.execute(
            "SELECT docs.id, -bm25(keywords) AS s FROM keywords "
            "JOIN docs ON docs.vid = keywords.rowid WHERE keywords MATCH ? "
            "ORDER BY s DESC, keywords.rowid LIMIT ?",
            (match, limit),
        ).fetchall()
        return [(r[0], r[1]) for r in rows]
    finally:
        con.close()


def assert_equals_fts5(col: Collection, directory: Path, query: str, limit: int = 20) -> None:
    hits = col.search(None, k=limit, text=query, mode="keyword")
    want = fts5_ranking(directory, query, limit)
    assert [h.id for h in hits] == [i for i, _ in want], query
    for h, (_, score) in zip(hits, want, strict=True):
        assert h.score == pytest.approx(score, rel=1e-12), (query, h.id)


QUERIES = ["w0 w1", "w5 ip-netconf", "common w2 w30", "w59", "o_direct --dry-run w3", "absent"]


@pytest.mark.parametrize("cache_bytes", [256 << 20, 600], ids=["cache", "tiny-cache"])
def test_scores_equal_fts5_through_this_handles_writes(tmp_path: Path, cache_bytes: int):
    rng = random.Random(1)
    directory = tmp_path / "c"
    with Collection.open(directory, background=False) as col:
        col.store._bm25 = bm25.Bm25Index(cache_bytes)
        col.upsert([Doc(f"d{i}", random_text(rng)) for i in range(300)], vectors(300))
        for q in QUERIES:
            assert_equals_fts5(col, directory, q)
        for step in range(12):  # each kind of write, then every query again
            if step % 3 == 0:
                ids = [f"d{rng.randrange(400)}" for _ in range(20)]  # new and replaced
                col.upsert([Doc(i, random_text(rng)) for i in ids], vectors(20, seed=step))
            elif step % 3 == 1:
                col.delete([f"d{rng.randrange(400)}" for _ in range(15)])
            else:
                col.delete_where({"id": {"in": [f"d{rng.randrange(400)}" for _ in range(5)]}})
            for q in QUERIES:
                assert_equals_fts5(col, directory, q)
        assert cache_bytes >= (1 << 20) or col.store._bm25.cached_bytes <= 2_000


def test_scores_equal_fts5_after_another_handles_writes(tmp_path: Path, monkeypatch):
    """A reader catches up on another writer's documents, or starts over when a catch-up would
    need pruned tombstones, many new documents, or the keyword index was rebuilt."""
    rng = random.Random(2)
    directory = tmp_path / "c"
    config = IndexConfig(index_type="Flat")
    with Collection.open(directory, config=config, background=False) as writer:
        writer.upsert([Doc(f"d{i}", random_text(rng)) for i in range(200)], vectors(200))
        writer.save()
        reader = Collection.open(directory, read_only=True)
        try:
            for q in QUERIES:
                assert_equals_fts5(reader, directory, q)
            # A small catch-up: new, replaced and deleted documents.
            writer.upsert([Doc(f"d{i}", random_text(rng)) for i in range(190, 230)], vectors(40))
            writer.delete(["d3", "d4", "d150"])
            for q in QUERIES:
                assert_equals_fts5(reader, directory, q)
            # The tombstones a catch-up needs are pruned by a saved snapshot: start over.
            writer.delete([f"d{i}" for i in range(10, 40)])
            writer.save()
            for q in QUERIES:
                assert_equals_fts5(reader, directory, q)
            # More new documents than a catch-up tokenizes: start over.
            monkeypatch.setattr(bm25, "_MAX_CATCH_UP", 5)
            writer.upsert([Doc(f"n{i}", random_text(rng)) for i in range(20)], vectors(20))
            for q in QUERIES:
                assert_equals_fts5(reader, directory, q)
            # The keyword index rebuilt over changed texts under the same vids.
            con = sqlite3.connect(directory / DATABASE)
            con.execute("UPDATE texts SET text = 'ip-netconf ip-netconf' WHERE vid = 1")
            con.execute("UPDATE meta SET value = value + 1 WHERE key = 'last_seq'")
            con.commit()
            con.close()
            writer.store.build_keywords()
            for q in QUERIES:
                assert_equals_fts5(reader, directory, q)
        finally:
            reader.close()


def test_a_filtered_keyword_search_equals_fts5_joined_with_the_filter(tmp_path: Path):
    rng = random.Random(3)
    directory = tmp_path / "c"
    with Collection.open(directory, background=False) as col:
        docs = [Doc(f"d{i}", random_text(rng), {"g": i % 4}) for i in range(200)]
        col.upsert(docs, vectors(200))
        for q in QUERIES:
            hits = col.search(None, 200, {"g": {"in": [1, 2]}}, text=q, mode="keyword")
            want = [(i, s) for i, s in fts5_ranking(directory, q, 200) if int(i[1:]) % 4 in (1, 2)]
            assert [h.id for h in hits] == [i for i, _ in want]
            assert [h.score for h in hits] == pytest.approx([s for _, s in want], rel=1e-12)
        assert col.search(None, 5, {"g": 9}, text="w0", mode="keyword") == []


def test_a_common_terms_count_follows_new_documents(tmp_path: Path):
    """`alpha` in half the documents is left out beside `beta` (its count is kept, not its
    postings); new documents holding it and not make it informative, with its new count."""
    directory = tmp_path / "c"
    texts = [("alpha " if i < 5 else "") + ("beta" if i >= 8 else "gamma") for i in range(10)]
    with Collection.open(directory, background=False) as col:
        col.upsert([Doc(f"d{i}", t) for i, t in enumerate(texts)], vectors(10))
        assert {h.id for h in col.search(None, 20, text="alpha beta", mode="keyword")} == {
            "d8",
            "d9",
        }
        assert_equals_fts5(col, directory, "alpha beta")
        col.upsert([Doc("n0", "alpha delta"), Doc("n1", "delta"), Doc("n2", "delta")], vectors(3))
        assert_equals_fts5(col, directory, "alpha beta")  # the first search after the write
        assert {"d0", "n0"} <= {i for i, _ in fts5_ranking(directory, "alpha beta", 20)}


def test_a_catch_up_that_fails_half_way_leaves_nothing_behind(tmp_path: Path, monkeypatch):
    rng = random.Random(4)
    directory = tmp_path / "c"
    with Collection.open(directory, background=False) as col:
        col.upsert([Doc(f"d{i}", random_text(rng)) for i in range(100)], vectors(100))
        for q in QUERIES:
            assert_equals_fts5(col, directory, q)  # terms cached: a catch-up tokenizes
        col.upsert([Doc(f"n{i}", "zeta " + random_text(rng)) for i in range(5)], vectors(5))

        def broken(self, vid):
            raise OSError("disk read error")

        store_type = type(col.store)
        monkeypatch.setattr(store_type, "texts_after", broken)
        with pytest.raises(OSError, match="disk read error"):
            col.search(None, 5, text="zeta w1", mode="keyword")
        monkeypatch.undo()
        for q in [*QUERIES, "zeta w1", "zeta"]:
            assert_equals_fts5(col, directory, q)


def test_terms_found_nowhere_cost_no_memory(tmp_path: Path):
    with Collection.open(tmp_path / "c", background=False) as col:
        col.upsert([Doc("a", "alpha beta")], vectors(1))
        for i in range(200):
            col.search(None, 5, text=" ".join(f"made{i}x{j}" for j in range(20)), mode="keyword")
        assert col.store._bm25._df == {} and col.store._bm25.cached_bytes == 0

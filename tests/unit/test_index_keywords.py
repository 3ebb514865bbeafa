"""Keyword search (BM25 over SQLite FTS5) against rank-bm25 on the same terms, identifiers,
hostile queries against brute force, and the keyword index kept in step with the documents.

What is compared with rank-bm25 (tests/bm25_reference.py: the same k1, b, IDF floor and terms):
every score of every matching document, to 1e-9 relative, and the order of the hits.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from bm25_reference import bm25_scores

from semsearch.evaluation.corpus import real_texts
from semsearch.index import Collection, Doc, InvalidArgument, KeywordIndexMissing, Limits, fulltext
from semsearch.index.keywords import index_terms, match_expression, query_terms
from semsearch.index.persistence import DATABASE

DIM = 16


def vectors(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def reference_scores(texts: dict[str, str], query: str, full: bool = False) -> dict[str, float]:
    """rank-bm25's score of every live document the query finds."""
    ids = list(texts)
    scores = bm25_scores([texts[i] for i in ids], query, full)
    return {ids[j]: float(scores[j]) for j in np.flatnonzero(scores > 0)}


def assert_keyword_hits_equal_reference(col: Collection, texts: dict[str, str], query: str):
    hits = col.search(None, k=len(texts) + 1, text=query, mode="keyword")
    want = reference_scores(texts, query)
    assert {h.id for h in hits} == set(want), query
    for h in hits:
        assert h.score == pytest.approx(want[h.id], rel=1e-9, abs=1e-12), (query, h.id)
        assert h.found_by is not None and h.found_by["keyword"].score == h.score
    assert [h.found_by["keyword"].rank for h in hits] == list(range(1, len(hits) + 1))
    got = [h.score for h in hits]
    assert got == sorted(got, reverse=True)
    # Same order as the reference, except among scores equal to float precision.
    order = sorted(want, key=lambda i: -want[i])
    assert [round(want[i], 9) for i in order] == [round(s, 9) for s in got]


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return list(real_texts(400, seed=3))


def test_bm25_equals_rank_bm25_and_follows_upserts_and_deletes(tmp_path: Path, corpus):
    docs = {f"d{i}": text for i, text in enumerate(corpus[:300])}
    queries = [" ".join(text.split()[:8]) for text in corpus[300:340]] + ["the", "of a", "zzz"]
    with Collection.open(tmp_path / "c", background=False) as col:
        col.upsert([Doc(i, t) for i, t in docs.items()], vectors(len(docs)))
        for q in queries:
            assert_keyword_hits_equal_reference(col, docs, q)
        # Replace a third (new texts), delete a sixth: N, avgdl and every df move with them.
        replaced = {f"d{i}": corpus[340 + i % 60] + f" extra{i}" for i in range(0, 300, 3)}
        col.upsert([Doc(i, t) for i, t in replaced.items()], vectors(len(replaced), seed=1))
        docs.update(replaced)
        gone = [f"d{i}" for i in range(1, 300, 6)]
        assert col.delete(gone) == len(gone)
        for i in gone:
            del docs[i]
        assert col.info()["keyword_count"] == len(docs)
        for q in [*queries, "extra3 extra6", corpus[341]]:
            assert_keyword_hits_equal_reference(col, docs, q)
    with Collection.open(tmp_path / "c", read_only=True) as col:  # the same, reopened
        assert_keyword_hits_equal_reference(col, docs, queries[0])


IDENTIFIERS = {
    "netconf": "Configure the ip-netconf service and restart it.",
    "odirect": "Open the file with O_DIRECT to bypass the page cache.",
    "dryrun": "Pass --dry-run to see what would change.",
    "prose": "A dry run of the netconf daemon: nothing is written.",
    "direct": "Direct flights only.",
}


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ("ip-netconf", {"netconf"}),  # the compound, exactly
        ("IP-NetConf", {"netconf"}),  # case-folded
        ("O_DIRECT", {"odirect"}),
        ("o_direct", {"odirect"}),
        ("--dry-run", {"dryrun"}),  # the option, with its dashes
        ("dry-run", {"dryrun"}),  # the bare compound also finds the option
        ("netconf", {"netconf", "prose"}),  # a word finds itself inside compounds
        ("direct", {"odirect", "direct"}),
        ("dry", {"dryrun", "prose"}),
        ("-n", set()),
    ],
)
def test_identifiers_are_searchable_as_written(tmp_path: Path, query: str, found: set[str]):
    with Collection.open(tmp_path / "c", background=False) as col:
        col.upsert([Doc(i, t) for i, t in IDENTIFIERS.items()], vectors(len(IDENTIFIERS)))
        hits = col.search(None, k=10, text=query, mode="keyword")
        assert {h.id for h in hits} == found
        assert_keyword_hits_equal_reference(col, IDENTIFIERS, query)


def test_terms_in_half_the_documents_are_left_out_only_beside_informative_ones(tmp_path: Path):
    texts = {f"d{i}": "common " * (i % 3 + 1) + ("rare" if i < 3 else "other") for i in range(10)}
    texts["lone"] = "unrelated"
    with Collection.open(tmp_path / "c", background=False) as col:
        col.upsert([Doc(i, t) for i, t in texts.items()], vectors(len(texts)))
        both = col.search(None, 20, text="common rare", mode="keyword")
        assert {h.id for h in both} == {"d0", "d1", "d2"}  # not the 7 with `common` alone
        full = reference_scores(texts, "common rare", full=True)
        for h in both:  # `common` would have added at most (k1 + 1) * 1e-6
            assert 0 <= full[h.id] - h.score <= 2.2e-6
        assert_keyword_hits_equal_reference(col, texts, "common rare")
        alone = col.search(None, 20, text="common", mode="keyword")
        assert len(alone) == 10 and alone[0].score == pytest.approx(1e-6 * 2.2, rel=0.5)
        assert len(col.search(None, 20, text="common absent", mode="keyword")) == 10
        assert_keyword_hits_equal_reference(col, texts, "common absent")


def test_the_exact_compound_ranks_first(tmp_path: Path):
    texts = {
        "exact": "ip-netconf restarts",
        "parts": "ip addresses and netconf sessions, ip again, netconf again",
    }
    with Collection.open(tmp_path / "c", background=False) as col:
        col.upsert([Doc(i, t) for i, t in texts.items()], vectors(2))
        assert [h.id for h in col.search(None, k=5, text="ip-netconf", mode="keyword")] == ["exact"]
        assert [h.id for h in col.search(None, k=5, text="netconf", mode="keyword")][0] == "parts"


HOSTILE = [
    '"',
    '""',
    '"unterminated',
    'alpha" OR "beta',
    "NEAR(alpha beta, 2)",
    "alpha NEAR beta",
    "alpha AND beta",
    "alpha OR beta",
    "NOT alpha",
    "alpha NOT beta",
    "alpha*",
    "*",
    "^alpha",
    "terms:alpha",
    "keywords:alpha",
    "{terms}: alpha",
    "- alpha",
    "(alpha OR (beta",
    ")",
    "alpha + beta",
    "",
    "   \t\n",
    "\x00alpha\x00",
    "\ud800alpha",
    "rowid:1",
    "'; DROP TABLE docs; --",
    "near and or not",
    "é café CAFÉ ﬁle",
]


def test_hostile_queries_find_exactly_the_documents_holding_their_terms(tmp_path: Path):
    words = ["alpha", "beta", "near", "and", "or", "not", "terms", "keywords", "café", "file"]
    rng = random.Random(7)
    texts = {
        f"d{i}": " ".join(rng.choice(words) for _ in range(rng.randint(1, 6))) for i in range(60)
    }
    texts["sql"] = "drop table docs"
    with Collection.open(tmp_path / "c", background=False) as col:
        col.upsert([Doc(i, t) for i, t in texts.items()], vectors(len(texts)))
        for query in HOSTILE:
            terms = set(query_terms(query))
            brute = {i for i, t in texts.items() if terms & set(index_terms(t))}
            hits = col.search(None, k=100, text=query, mode="keyword")
            assert {h.id for h in hits} == brute, query
            assert_keyword_hits_equal_reference(col, texts, query)
        assert col.count() == len(texts)  # nothing was dropped


def test_a_long_query_is_bounded(tmp_path: Path):
    limits = Limits(max_keyword_terms=8)
    with Collection.open(tmp_path / "c", background=False, limits=limits) as col:
        col.upsert([Doc("a", "alpha beta")], vectors(1))
        eight = " ".join(f"w{i}" for i in range(7)) + " alpha" * 10_000  # repeats count once
        assert [h.id for h in col.search(None, 3, text=eight, mode="keyword")] == ["a"]
        with pytest.raises(InvalidArgument, match="SEMSEARCH_MAX_KEYWORD_TERMS"):
            col.search(None, 3, text=eight + " w8", mode="keyword")
        with pytest.raises(InvalidArgument, match="mode"):
            col.search(None, 3, text="alpha", mode="sparse")
        with pytest.raises(InvalidArgument, match="text"):
            col.search(None, 3, mode="keyword")


def test_every_term_is_quoted_for_fts5():
    con = sqlite3.connect(":memory:")
    con.execute("CREATE VIRTUAL TABLE t USING fts5(x)")
    for query in HOSTILE:
        terms = query_terms(query)
        if terms:  # a query FTS5 would refuse, or read as syntax, raises here
            con.execute("SELECT * FROM t WHERE t MATCH ?", (match_expression(terms),)).fetchall()
    with pytest.raises(ValueError):
        match_expression([])


def drop_keyword_index(directory: Path) -> None:
    """What a collection written before keyword search looks like: no FTS5 table, no meta rows."""
    con = sqlite3.connect(directory / DATABASE)
    con.execute("DROP TABLE keywords")
    con.execute("DELETE FROM meta WHERE key IN ('keyword_seq', 'keyword_version')")
    con.commit()
    con.close()


def test_a_collection_without_keyword_index_gets_it_when_opened_for_writing(tmp_path: Path):
    texts = {"a": "alpha beta", "b": "beta gamma", "c": "gamma ip-netconf"}
    directory = tmp_path / "c"
    with Collection.open(directory, background=False) as col:
        col.upsert([Doc(i, t) for i, t in texts.items()], vectors(3))
    drop_keyword_index(directory)
    with Collection.open(directory, read_only=True) as col:
        assert col.info()["keyword_count"] is None
        with pytest.raises(KeywordIndexMissing, match="open it for writing"):
            col.search(None, 3, text="beta", mode="keyword")
        assert [h.id for h in col.search(vectors(3)[0], 1)] == ["a"]  # dense still works
    with Collection.open(directory, background=False) as col:
        assert col.info()["keyword_count"] == 3
        assert_keyword_hits_equal_reference(col, texts, "beta ip-netconf")


def test_writes_by_code_that_skips_the_keyword_index_make_it_rebuild(tmp_path: Path):
    """A write that moved the sequence without the keyword index (an older version of this code)
    leaves it behind: the next writable open (or search) rebuilds it from the texts."""
    texts = {"a": "alpha beta", "b": "beta gamma"}
    directory = tmp_path / "c"
    with Collection.open(directory, background=False) as col:
        col.upsert([Doc(i, t) for i, t in texts.items()], vectors(2))
        con = sqlite3.connect(directory / DATABASE)
        con.execute("UPDATE texts SET text = 'delta' WHERE vid = 1")
        con.execute("UPDATE meta SET value = value + 1 WHERE key = 'last_seq'")
        con.commit()
        con.close()
        texts["a"] = "delta"
        assert not col.store.keywords_ready()
        assert_keyword_hits_equal_reference(col, texts, "alpha delta beta")  # rebuilt first
        assert col.store.keywords_ready()


def test_a_failed_write_leaves_the_keyword_index_as_it_was(tmp_path: Path, monkeypatch):
    """The terms go in with the rows, in one transaction: a write that fails after adding them
    (here: the sequence update) rolls both back."""
    texts = {"a": "alpha beta", "b": "beta gamma"}
    with Collection.open(tmp_path / "c", background=False) as col:
        col.upsert([Doc(i, t) for i, t in texts.items()], vectors(2))

        def fail(con: sqlite3.Connection, seq: int) -> None:
            raise RuntimeError("disk full")

        monkeypatch.setattr(fulltext, "advance", fail)
        with pytest.raises(RuntimeError, match="disk full"):
            col.upsert([Doc("a", "omega"), Doc("z", "omega")], vectors(2, seed=5))
        with pytest.raises(RuntimeError, match="disk full"):
            col.delete(["b"])
        monkeypatch.undo()
        assert col.store.keywords_ready() and col.count() == 2
        assert_keyword_hits_equal_reference(col, texts, "alpha omega beta")


CAMEL = {
    "getter": "Call getUserName() before saving.",
    "server": "The HTTPServer class handles each request.",
    "prose": "The user's name and the http server log.",
}


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ("getUserName", {"getter"}),  # the identifier, whole (case-folded)
        ("getusername", {"getter"}),
        ("user", {"getter", "prose"}),  # a camel-case part finds the identifier
        ("name", {"getter", "prose"}),
        ("HTTPServer", {"server"}),
        ("server", {"server", "prose"}),
        ("http", {"server", "prose"}),
    ],
)
def test_camel_case_identifiers_are_searchable_by_their_parts(
    tmp_path: Path, query: str, found: set[str]
):
    with Collection.open(tmp_path / "c", background=False) as col:
        col.upsert([Doc(i, t) for i, t in CAMEL.items()], vectors(len(CAMEL)))
        assert {h.id for h in col.search(None, k=10, text=query, mode="keyword")} == found
        assert_keyword_hits_equal_reference(col, CAMEL, query)

"""The keyword index: an SQLite FTS5 table over the documents' terms, inside `docs.sqlite`.

Called by index/store.py alone, on its connection and inside its transactions (this file opens
nothing): a write adds the new versions' terms in the same transaction as their rows, a replace
or delete removes the old versions' terms before their texts go, so the keyword index and the
documents are always one committed state. The table is contentless (`content=''`): it holds
postings and document lengths, not a second copy of the texts; removing a document hands FTS5 the
terms it was indexed with, recomputed from its stored text by the same tokenizer
(index/keywords.py), whose version is recorded beside the index.

`meta.keyword_seq` is the write sequence the index reflects. Writes move it on with `last_seq`
only while the two are equal and the table exists, so an index that is missing (a collection made
before keyword search, a dropped table), was built by another tokenizer version, or missed writes
(made by an older version of this code) is seen as not ready, and rebuilt from the stored texts
when the collection is next opened for writing (one transaction: a crash leaves the old state).

BM25 is FTS5's `bm25()` (k1 = 1.2, b = 0.75; IDF `log((N - n + 0.5) / (n + 0.5))`, at least
1e-6), negated so that higher is better. Its cost is one score per document holding any query
term, so a query's terms found in at least half the documents (`n >= N / 2`: the IDF is clamped to
1e-6) are left out of the match when one of its other terms is in some document: each could add at
most 2.2e-6 (`(k1 + 1) * 1e-6`) to a document's score, and they are the longest posting lists (at
100,000 documents a query's median time falls from 66 to 18 ms: docs/benchmarks.md). Documents
holding only such terms, which they would rank by 1e-6 weights, are then not found.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from typing import Any

import numpy as np

from semsearch.index.keywords import FTS_TOKENIZE, match_expression, stored_string, version_code

log = logging.getLogger(__name__)

TABLE = "keywords"
VOCABULARY = f"{TABLE}_vocab"  # each term's document count
_CREATE = (
    f"CREATE VIRTUAL TABLE {TABLE} USING fts5(terms, content='', tokenize=\"{FTS_TOKENIZE}\")",
    f"CREATE VIRTUAL TABLE {VOCABULARY} USING fts5vocab({TABLE}, row)",
)
_BUILD_CHUNK = 1_000  # texts read and indexed at a time while rebuilding


def present(con: sqlite3.Connection) -> bool:
    row = con.execute(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN (?, ?)",
        (TABLE, VOCABULARY),
    ).fetchone()
    return row[0] == 2


def ready(con: sqlite3.Connection) -> bool:
    """The index exists, was built by this tokenizer, and reflects every write."""
    meta = dict(
        con.execute(
            "SELECT key, value FROM meta WHERE key IN ('last_seq', 'keyword_seq', "
            "'keyword_version')"
        ).fetchall()
    )
    return (
        meta.get("keyword_version") == version_code()
        and meta.get("keyword_seq") == meta.get("last_seq")
        and present(con)
    )


def rebuild(con: sqlite3.Connection) -> int:
    """Drop and rebuild the index from the stored texts; the documents indexed. The caller holds
    a write transaction (BEGIN IMMEDIATE) and commits it."""
    con.execute(f"DROP TABLE IF EXISTS {VOCABULARY}")
    con.execute(f"DROP TABLE IF EXISTS {TABLE}")
    for sql in _CREATE:
        con.execute(sql)
    last, n = -1, 0
    while True:
        rows = con.execute(
            "SELECT vid, text FROM texts WHERE vid > ? ORDER BY vid LIMIT ?", (last, _BUILD_CHUNK)
        ).fetchall()
        if not rows:
            break
        con.executemany(
            f"INSERT INTO {TABLE} (rowid, terms) VALUES (?, ?)",
            [(vid, stored_string(text)) for vid, text in rows],
        )
        last, n = rows[-1][0], n + len(rows)
    con.execute(f"INSERT INTO {TABLE} ({TABLE}) VALUES ('optimize')")  # one segment: faster reads
    seq = con.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()[0]
    con.executemany(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
        [("keyword_seq", seq), ("keyword_version", version_code())],
    )
    return n


def add(con: sqlite3.Connection, vids: Sequence[int], terms: Sequence[str]) -> None:
    """Index new document versions (`terms`: `keywords.stored_string` of each text)."""
    if present(con):
        con.executemany(
            f"INSERT INTO {TABLE} (rowid, terms) VALUES (?, ?)", zip(vids, terms, strict=True)
        )


def remove(con: sqlite3.Connection, vids: Sequence[int]) -> None:
    """Unindex these versions; call before their texts are deleted."""
    if not vids or not present(con):
        return
    for vid in vids:
        row = con.execute("SELECT text FROM texts WHERE vid = ?", (vid,)).fetchone()
        if row is not None:
            con.execute(
                f"INSERT INTO {TABLE} ({TABLE}, rowid, terms) VALUES ('delete', ?, ?)",
                (vid, stored_string(row[0])),
            )


def advance(con: sqlite3.Connection, seq: int) -> None:
    """The write moving `last_seq` to `seq` kept the index in step: move `keyword_seq` with it
    (only if it was in step before). Call before `last_seq` is updated."""
    con.execute(
        "UPDATE meta SET value = ? WHERE key = 'keyword_seq' "
        "AND value = (SELECT value FROM meta WHERE key = 'last_seq') "
        "AND EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?)",
        (seq, TABLE),
    )


def count(con: sqlite3.Connection) -> int | None:
    """Documents in the index; None when there is none."""
    if not present(con):
        return None
    return int(con.execute(f"SELECT count(*) FROM {TABLE}_docsize").fetchone()[0])


def informative(con: sqlite3.Connection, terms: list[str]) -> list[str]:
    """The terms in some but fewer than half the documents; all of `terms` if there are none."""
    if len(terms) < 2:
        return terms
    n = con.execute(f"SELECT count(*) FROM {TABLE}_docsize").fetchone()[0]
    keep = []
    for term in terms:
        row = con.execute(f"SELECT doc FROM {VOCABULARY} WHERE term = ?", (term,)).fetchone()
        if row is not None and 0 < 2 * row[0] < n:
            keep.append(term)
    return keep or terms


def search(
    con: sqlite3.Connection,
    terms: list[str],
    limit: int,
    where: str | None,
    params: Sequence[Any],
) -> tuple[np.ndarray, np.ndarray]:
    """`(vids, bm25)` of the best `limit` documents holding any of `terms` (and matching the
    filter's SQL condition `where` over `docs`, when given), best first; ties by vid. Terms in
    half the documents or more are left out when there are others (the module's docstring)."""
    match = match_expression(informative(con, terms))
    if where is None:
        sql = (
            f"SELECT rowid, -bm25({TABLE}) AS s FROM {TABLE} WHERE {TABLE} MATCH ? "
            "ORDER BY s DESC, rowid LIMIT ?"
        )
        args: list[Any] = [match, limit]
    else:
        sql = (
            f"SELECT {TABLE}.rowid, -bm25({TABLE}) AS s FROM {TABLE} "
            f"JOIN docs ON docs.vid = {TABLE}.rowid WHERE {TABLE} MATCH ? AND ({where}) "
            f"ORDER BY s DESC, {TABLE}.rowid LIMIT ?"
        )
        args = [match, *params, limit]
    rows = con.execute(sql, args).fetchall()
    return (
        np.array([r[0] for r in rows], dtype=np.int64),
        np.array([r[1] for r in rows], dtype=np.float64),
    )

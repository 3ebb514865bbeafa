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

Searches do not use FTS5's `bm25()`, which scores every document holding a query term with no
top-k pruning: index/bm25.py scores FTS5's BM25 in memory, from the postings and document lengths
read here.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence

import numpy as np

from semsearch.index.keywords import FTS_TOKENIZE, stored_string, version_code

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
    build = con.execute("SELECT value FROM meta WHERE key = 'keyword_build'").fetchone()
    con.executemany(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
        [
            ("keyword_seq", seq),
            ("keyword_version", version_code()),
            # Another build, maybe of other texts under the same vids: readers start over.
            ("keyword_build", (build[0] if build else 0) + 1),
        ],
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


def indexed_state(con: sqlite3.Connection) -> tuple[int, int]:
    """`(write sequence, build)`: the sequence the index reflects, and which build it is."""
    meta = dict(
        con.execute("SELECT key, value FROM meta WHERE key IN ('keyword_seq', 'keyword_build')")
    )
    return int(meta["keyword_seq"]), int(meta.get("keyword_build", 0))


def doc_lengths(con: sqlite3.Connection, after: int) -> tuple[np.ndarray, np.ndarray]:
    """`(vids, lengths)` of the documents indexed with a vid after `after`, ascending: each one's
    number of terms, as `bm25()` counts it (FTS5's docsize: one varint per column)."""
    rows = con.execute(
        f"SELECT id, sz FROM {TABLE}_docsize WHERE id > ? ORDER BY id", (after,)
    ).fetchall()
    vids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    return vids, _varints([r[1] for r in rows])


def doc_frequency(con: sqlite3.Connection, term: str) -> int:
    """Documents holding `term` (FTS5 counts them by walking its postings)."""
    row = con.execute(f"SELECT doc FROM {VOCABULARY} WHERE term = ?", (term,)).fetchone()
    return 0 if row is None else int(row[0])


def postings(con: sqlite3.Connection, term: str) -> tuple[np.ndarray, np.ndarray]:
    """`(vids, occurrences)` of the documents holding `term`, ascending vids."""
    # An `instance` vocabulary lists every occurrence; it lives in this connection's temp schema,
    # so reading postings never writes to the collection's file.
    con.execute(
        f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.{TABLE}_instance "
        f"USING fts5vocab(main, {TABLE}, instance)"
    )
    rows = con.execute(
        f"SELECT doc, count(*) FROM temp.{TABLE}_instance WHERE term = ? GROUP BY doc ORDER BY doc",
        (term,),
    ).fetchall()
    return (
        np.array([r[0] for r in rows], dtype=np.int64),
        np.array([r[1] for r in rows], dtype=np.float64),
    )


def _varints(blobs: list[bytes]) -> np.ndarray:
    """(n,) float64: the first varint of each blob, SQLite's format (big-endian, 7 bits a byte,
    a set high bit: more follow), decoded for all blobs at once. A token count fits 8 bytes."""
    sizes = np.fromiter(map(len, blobs), dtype=np.int64, count=len(blobs))
    data = np.frombuffer(b"".join(blobs), dtype=np.uint8)
    starts = np.cumsum(sizes) - sizes
    value = np.zeros(len(blobs), dtype=np.int64)
    going = sizes > 0  # (n,) bool: still reading this blob's varint
    for i in range(8):
        if not going.any():
            break
        byte = data[starts[going] + i].astype(np.int64)
        value[going] = (value[going] << 7) | (byte & 0x7F)
        still = byte >= 0x80
        going[np.flatnonzero(going)[~still]] = False
    return value.astype(np.float64)

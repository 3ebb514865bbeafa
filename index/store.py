"""The source of truth: documents, metadata, vectors and the write sequence in SQLite (WAL).

The only file in the project that opens SQLite to read and write documents (index/backup.py
copies the file whole). Each written version of a document gets a fresh
vector id `vid` from one monotonically increasing sequence (`meta.last_seq`); the FAISS index is
keyed by vids, so a replaced or deleted version is never confused with the live one. Every
replaced or deleted vid is logged in `tombstones` with the seq that killed it, which lets a FAISS
snapshot taken at seq S catch up: add live docs with vid > S, remove vids tombstoned after S.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from semsearch.index import fulltext
from semsearch.index.bm25 import Bm25Index
from semsearch.index.documents import Doc
from semsearch.index.errors import FilterError, QueryTimeout
from semsearch.index.ids import CHUNK_MARK, chunk_number
from semsearch.index.json_paths import storable, stored_metadata
from semsearch.index.keywords import stored_string
from semsearch.index.store_keywords import KeywordReads
from semsearch.index.store_listing import Listing

log = logging.getLogger(__name__)

_SCHEMA = """
-- Three tables keyed by vid: a filter scans only the small (id, metadata) rows, never the
-- texts and 1.5 kB vectors (one wide table made a 100k-doc filter 10x slower).
CREATE TABLE IF NOT EXISTS docs (
    vid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    metadata TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS texts (vid INTEGER PRIMARY KEY, text TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vectors (vid INTEGER PRIMARY KEY, vector BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS tombstones (vid INTEGER PRIMARY KEY, seq INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS tombstones_by_seq ON tombstones(seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
-- Metadata fields declared for an expression index (`Store.index_field`).
CREATE TABLE IF NOT EXISTS field_indexes (path TEXT PRIMARY KEY, field TEXT NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('last_seq', 0), ('pruned_through', 0);
"""
_IN_CHUNK = 900  # bound parameters per IN (...) query
# Every id that begins with `<parent>#chunk-` sorts before `<parent>#chunk.` ("." follows "-").
_AFTER_CHUNK_MARK = CHUNK_MARK[:-1] + "."
# SQLite VM instructions between two looks at a query's deadline: a Python call each time, so
# rare enough to cost well under 1% of a scan, frequent enough to stop within milliseconds.
_PROGRESS_STEPS = 10_000


def _chunks(items: Sequence[Any], size: int = _IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _vectors(blobs: Iterable[bytes], dim: int) -> np.ndarray:
    data = b"".join(blobs)
    return np.frombuffer(data, dtype="<f4").reshape(-1, dim).astype(np.float32)  # (n, dim)


def _interrupted(error: sqlite3.Error) -> bool:
    """True when the progress handler (a deadline) stopped the query."""
    code = getattr(error, "sqlite_errorcode", None)
    return code == sqlite3.SQLITE_INTERRUPT if code is not None else "interrupt" in str(error)


class Store(Listing, KeywordReads):
    def __init__(
        self,
        path: Path,
        query_timeout_s: float | None = None,
        keyword_cache_bytes: int = 64 << 20,
    ) -> None:
        self.path = path
        self._bm25 = Bm25Index(keyword_cache_bytes)  # keyword search (index/store_keywords.py)
        self.query_timeout_s = query_timeout_s
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        con = self._con()
        con.executescript(_SCHEMA)

    def _con(self) -> sqlite3.Connection:
        """One connection per thread: WAL readers then never wait for each other or the writer."""
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(
                self.path, timeout=60.0, isolation_level=None, check_same_thread=False
            )
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")  # an acknowledged write survives power loss
            self._local.con = con
            with self._lock:
                self._all.append(con)
        return con

    def checkpoint(self) -> None:
        """Fold the WAL into the database file and truncate it (skipped while readers hold it)."""
        self._con().execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with self._lock:
            for con in self._all:
                con.close()
            self._all.clear()
        self._local = threading.local()

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside see one consistent state of the database (a WAL read transaction).

        Nests: inside an open transaction it adds nothing, so callers can compose."""
        con = self._con()
        if con.in_transaction:
            yield
            return
        con.execute("BEGIN")
        try:
            yield
        finally:
            if con.in_transaction:  # an error inside may have ended it; keep that error
                con.execute("COMMIT")

    @contextmanager
    def _deadline(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, its queries stopped with QueryTimeout past the deadline.

        Only for reads a request drives (filter scans, the rows of hits, gets): the handler is
        installed around them alone, so writes, catch-ups and rebuilds never meet it and a
        transaction is never cut half-way. An interrupted SELECT rolls nothing back, so an
        enclosing `snapshot()` stays valid. Each use starts its own clock."""
        con = self._con()
        timeout = self.query_timeout_s
        if timeout is None:
            yield con
            return
        deadline = time.monotonic() + timeout
        con.set_progress_handler(lambda: time.monotonic() > deadline, _PROGRESS_STEPS)
        try:
            yield con
        except sqlite3.OperationalError as e:
            if not _interrupted(e):
                raise
            raise QueryTimeout(
                f"a query ran past the {timeout:g} s limit (SEMSEARCH_QUERY_TIMEOUT_S) and was "
                "stopped; narrow the filter, or retry when the server is less busy"
            ) from None
        finally:
            con.set_progress_handler(None, 0)

    # -- reads ---------------------------------------------------------------------------------

    def _meta(self, key: str) -> int:
        return int(
            self._con().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]
        )

    def option(self, key: str) -> int | None:
        """A collection setting kept beside the sequences in `meta` (None: not set)."""
        row = self._con().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else int(row[0])

    def set_options(self, values: dict[str, int]) -> None:
        con = self._con()
        con.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", values.items())

    def last_seq(self) -> int:
        return self._meta("last_seq")

    def pruned_through(self) -> int:
        return self._meta("pruned_through")

    def count(self) -> int:
        return int(self._con().execute("SELECT count(*) FROM docs").fetchone()[0])

    def indexed_fields(self) -> dict[str, str]:
        """The declared fields' JSON paths and their names as declared."""
        return dict(self._con().execute("SELECT path, field FROM field_indexes"))

    def index_field(self, path: str, field: str, literal: str) -> bool:
        """Build an expression index on `json_extract(metadata, <literal>)` (`literal`: `path`
        as an SQL string, from index/filters.py); False if the field had one."""
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            if con.execute("SELECT 1 FROM field_indexes WHERE path = ?", (path,)).fetchone():
                con.execute("ROLLBACK")
                return False
            name = "field_" + hashlib.sha256(path.encode()).hexdigest()[:16]
            con.execute(f'CREATE INDEX "{name}" ON docs(json_extract(metadata, {literal}))')
            con.execute("INSERT INTO field_indexes (path, field) VALUES (?, ?)", (path, field))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return True

    def get(self, doc_id: str) -> Doc | None:
        if not storable(doc_id):
            return None  # no stored id has a lone surrogate; binding one would raise
        with self._deadline() as con:
            row = con.execute(
                "SELECT d.id, t.text, d.metadata FROM docs d JOIN texts t USING (vid) "
                "WHERE d.id = ?",
                (doc_id,),
            ).fetchone()
        return None if row is None else Doc(row[0], row[1], json.loads(row[2]))

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for part in _chunks([i for i in ids if storable(i)]):
            marks = ",".join("?" * len(part))
            rows = self._con().execute(f"SELECT id FROM docs WHERE id IN ({marks})", part)
            found.update(r[0] for r in rows)
        return found

    def docs_by_vids(self, vids: Sequence[int]) -> dict[int, Doc]:
        out: dict[int, Doc] = {}
        for part in _chunks([int(v) for v in vids]):
            marks = ",".join("?" * len(part))
            sql = (
                "SELECT vid, d.id, t.text, d.metadata FROM docs d JOIN texts t USING (vid) "
                f"WHERE vid IN ({marks})"
            )
            with self._deadline() as con:
                rows = con.execute(sql, part).fetchall()
            for vid, doc_id, text, meta in rows:
                out[vid] = Doc(doc_id, text, json.loads(meta))
        return out

    def filter_vids(self, where: str, params: Sequence[Any]) -> np.ndarray:
        """Vector ids of live documents matching an SQL condition (index/filters.py).

        `where` is built by index/filters.py alone (user strings are only ever in `params`).
        QueryTimeout past the deadline; any other SQLite error while evaluating the filter is
        a FilterError, its SQL kept out of the message (logged instead)."""
        try:
            with self._deadline() as con:
                rows = con.execute(f"SELECT vid FROM docs WHERE {where}", list(params)).fetchall()
        except sqlite3.Error as e:
            log.warning("filter scan failed: %s (WHERE %.500s)", e, where)
            raise FilterError(
                f"the filter could not be evaluated over the stored metadata ({e})"
            ) from None
        return np.array([r[0] for r in rows], dtype=np.int64)

    def vectors_by_vids(self, vids: Sequence[int], dim: int) -> tuple[np.ndarray, np.ndarray]:
        got_vids: list[int] = []
        blobs: list[bytes] = []
        for part in _chunks([int(v) for v in vids]):
            marks = ",".join("?" * len(part))
            with self._deadline() as con:
                rows = con.execute(
                    f"SELECT vid, vector FROM vectors WHERE vid IN ({marks})", part
                ).fetchall()
            for vid, blob in rows:
                got_vids.append(vid)
                blobs.append(blob)
        return np.array(got_vids, dtype=np.int64), _vectors(blobs, dim)

    def iter_vectors(
        self, dim: int, after: int = 0, chunk: int = 8_192
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Live `(vids, vectors)` with vid > `after`, in vid order, `chunk` rows at a time."""
        last = after
        while True:
            rows = (
                self._con()
                .execute(
                    "SELECT vid, vector FROM vectors WHERE vid > ? ORDER BY vid LIMIT ?",
                    (last, chunk),
                )
                .fetchall()
            )
            if not rows:
                return
            last = rows[-1][0]
            yield (
                np.array([r[0] for r in rows], dtype=np.int64),
                _vectors((r[1] for r in rows), dim),
            )

    def sample_vectors(self, n: int, dim: int) -> np.ndarray:
        """About `n` vectors spread evenly over the collection (deterministic: IVF training
        gives the same centroids for the same data)."""
        step = max(1, self.count() // max(n, 1))
        rows = (
            self._con()
            .execute("SELECT vector FROM vectors WHERE vid % ? = 0 LIMIT ?", (step, n))
            .fetchall()
        )
        return _vectors((r[0] for r in rows), dim)

    def tombstones_after(self, seq: int) -> np.ndarray:
        """Vids that were live at `seq` and have been replaced or deleted since."""
        rows = (
            self._con()
            .execute("SELECT vid FROM tombstones WHERE seq > ? AND vid <= ?", (seq, seq))
            .fetchall()
        )
        return np.array([r[0] for r in rows], dtype=np.int64)

    def iter_docs(self, chunk: int = 1_024) -> Iterator[list[Doc]]:
        last = ""
        while True:
            rows = (
                self._con()
                .execute(
                    "SELECT d.id, t.text, d.metadata FROM docs d JOIN texts t USING (vid) "
                    "WHERE d.id > ? ORDER BY d.id LIMIT ?",
                    (last, chunk),
                )
                .fetchall()
            )
            if not rows:
                return
            last = rows[-1][0]
            yield [Doc(r[0], r[1], json.loads(r[2])) for r in rows]

    # -- writes (the caller holds the collection's writer lock) --------------------------------

    def write(
        self, docs: Sequence[Doc], vectors: np.ndarray, families: Sequence[str] = ()
    ) -> tuple[np.ndarray, np.ndarray]:
        """Upsert in one transaction; `(new vids, removed vids)`. Ids must be unique in `docs`.
        `families`: documents whose stored forms (the id, its chunks) not written now go too."""
        # Encoded before the transaction: a bad value fails here, with nothing begun or locked.
        meta = [stored_metadata(d.id, d.text, d.metadata) for d in docs]
        terms = [stored_string(d.text) for d in docs]  # the keyword index's, also beforehand
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            seq = self.last_seq()
            old = self._vids_of(con, [d.id for d in docs])
            vids = np.arange(seq + 1, seq + 1 + len(docs), dtype=np.int64)
            dead = [(old[d.id], int(v)) for d, v in zip(docs, vids, strict=True) if d.id in old]
            written = {d.id for d in docs}
            stale = [v for i, v in self._family_vids(con, families).items() if i not in written]
            end = seq + len(docs)
            dead += [(vid, end + n + 1) for n, vid in enumerate(stale)]  # after the new vids
            con.executemany("INSERT INTO tombstones (vid, seq) VALUES (?, ?)", dead)
            self._drop(con, [vid for vid, _ in dead])
            blob = np.ascontiguousarray(vectors, dtype="<f4")
            v_ints = [int(v) for v in vids]
            con.executemany(
                "INSERT INTO docs (vid, id, metadata) VALUES (?, ?, ?)",
                zip(v_ints, (d.id for d in docs), meta, strict=True),
            )
            con.executemany(
                "INSERT INTO texts (vid, text) VALUES (?, ?)",
                zip(v_ints, (d.text for d in docs), strict=True),
            )
            con.executemany(
                "INSERT INTO vectors (vid, vector) VALUES (?, ?)",
                zip(v_ints, (row.tobytes() for row in blob), strict=True),
            )
            fulltext.add(con, v_ints, terms)
            self._set_seq(con, end + len(stale))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return vids, np.array([d for d, _ in dead], dtype=np.int64)

    def delete(self, ids: Sequence[str], families: bool = False) -> np.ndarray:
        """Delete in one transaction; the vids removed (absent ids are skipped). `families`:
        each id's chunks (`<id>#chunk-<n>`) too."""
        wanted = [i for i in dict.fromkeys(ids) if storable(i)]
        if families:
            return self._delete(lambda con: self._family_vids(con, wanted))
        return self._delete(lambda con: self._vids_of(con, wanted))

    def delete_where(self, where: str, params: Sequence[Any]) -> np.ndarray:
        """Delete every document matching an SQL condition built by index/filters.py, in one
        transaction (chosen and deleted under the same write lock); the vids removed."""
        return self._delete(
            lambda con: dict(con.execute(f"SELECT id, vid FROM docs WHERE {where}", params))
        )

    def _delete(self, chosen: Callable[[sqlite3.Connection], dict[str, int]]) -> np.ndarray:
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            seq = self.last_seq()
            old = chosen(con)
            dead = [(vid, seq + i + 1) for i, vid in enumerate(old.values())]
            con.executemany("INSERT INTO tombstones (vid, seq) VALUES (?, ?)", dead)
            self._drop(con, list(old.values()))
            self._set_seq(con, seq + len(dead))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return np.array([vid for vid, _ in dead], dtype=np.int64)

    def prune_tombstones(self, through: int) -> None:
        """Forget tombstones a saved snapshot already reflects (readers behind it reload it)."""
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            con.execute("DELETE FROM tombstones WHERE seq <= ?", (through,))
            con.execute(
                "UPDATE meta SET value = max(value, ?) WHERE key = 'pruned_through'", (through,)
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    @staticmethod
    def _drop(con: sqlite3.Connection, vids: Sequence[int]) -> None:
        fulltext.remove(con, vids)  # reads the texts, so before they go
        for table in ("docs", "texts", "vectors"):
            con.executemany(f"DELETE FROM {table} WHERE vid = ?", [(v,) for v in vids])

    @staticmethod
    def _family_vids(con: sqlite3.Connection, parents: Sequence[str]) -> dict[str, int]:
        """The stored ids and vids of each parent: the id itself and its `#chunk-<n>` ids (a
        range scan of the id index each)."""
        out: dict[str, int] = {}
        for parent in parents:
            rows = con.execute(
                "SELECT id, vid FROM docs WHERE id = ? OR (id > ? AND id < ?)",
                (parent, parent + CHUNK_MARK, parent + _AFTER_CHUNK_MARK),
            )
            out.update(
                (i, v) for i, v in rows if i == parent or chunk_number(parent, i) is not None
            )
        return out

    @staticmethod
    def _vids_of(con: sqlite3.Connection, ids: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for part in _chunks(list(ids)):
            marks = ",".join("?" * len(part))
            out.update(con.execute(f"SELECT id, vid FROM docs WHERE id IN ({marks})", part))
        return out

    @staticmethod
    def _set_seq(con: sqlite3.Connection, seq: int) -> None:
        fulltext.advance(con, seq)  # every write keeps the keyword index in step
        con.execute("UPDATE meta SET value = ? WHERE key = 'last_seq'", (seq,))


def peek(path: Path) -> tuple[int, dict[str, int]]:
    """`(documents, settings kept in meta)` of a store file, through a read-only connection:
    nothing is created, written or locked for writing (a collection listed but not opened)."""
    con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    try:
        count = int(con.execute("SELECT count(*) FROM docs").fetchone()[0])
        meta = {str(k): int(v) for k, v in con.execute("SELECT key, value FROM meta")}
        return count, meta
    finally:
        con.close()

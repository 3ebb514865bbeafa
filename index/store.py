"""The source of truth: documents, metadata, vectors and the write sequence in SQLite (WAL).

The only file in the project that opens SQLite. Each written version of a document gets a fresh
vector id `vid` from one monotonically increasing sequence (`meta.last_seq`); the FAISS index is
keyed by vids, so a replaced or deleted version is never confused with the live one. Every
replaced or deleted vid is logged in `tombstones` with the seq that killed it, which lets a FAISS
snapshot taken at seq S catch up: add live docs with vid > S, remove vids tombstoned after S.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from index.documents import Doc

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
INSERT OR IGNORE INTO meta VALUES ('last_seq', 0), ('pruned_through', 0);
"""
_IN_CHUNK = 900  # bound parameters per IN (...) query


def _chunks(items: Sequence[Any], size: int = _IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _vectors(blobs: Iterable[bytes], dim: int) -> np.ndarray:
    data = b"".join(blobs)
    return np.frombuffer(data, dtype="<f4").reshape(-1, dim).astype(np.float32)  # (n, dim)


class Store:
    def __init__(self, path: Path, query_timeout_s: float | None = None) -> None:
        self.path = path
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
            con.execute("COMMIT")

    # -- reads ---------------------------------------------------------------------------------

    def _meta(self, key: str) -> int:
        return int(
            self._con().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]
        )

    def last_seq(self) -> int:
        return self._meta("last_seq")

    def pruned_through(self) -> int:
        return self._meta("pruned_through")

    def count(self) -> int:
        return int(self._con().execute("SELECT count(*) FROM docs").fetchone()[0])

    def get(self, doc_id: str) -> Doc | None:
        row = (
            self._con()
            .execute(
                "SELECT d.id, t.text, d.metadata FROM docs d JOIN texts t USING (vid) "
                "WHERE d.id = ?",
                (doc_id,),
            )
            .fetchone()
        )
        return None if row is None else Doc(row[0], row[1], json.loads(row[2]))

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for part in _chunks(list(ids)):
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
            for vid, doc_id, text, meta in self._con().execute(sql, part):
                out[vid] = Doc(doc_id, text, json.loads(meta))
        return out

    def filter_vids(self, where: str, params: Sequence[Any]) -> np.ndarray:
        """Vector ids of live documents matching an SQL condition (index/filters.py)."""
        rows = self._con().execute(f"SELECT vid FROM docs WHERE {where}", list(params)).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def vectors_by_vids(self, vids: Sequence[int], dim: int) -> tuple[np.ndarray, np.ndarray]:
        got_vids: list[int] = []
        blobs: list[bytes] = []
        for part in _chunks([int(v) for v in vids]):
            marks = ",".join("?" * len(part))
            for vid, blob in self._con().execute(
                f"SELECT vid, vector FROM vectors WHERE vid IN ({marks})", part
            ):
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

    def write(self, docs: Sequence[Doc], vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Upsert in one transaction; `(new vids, replaced vids)`. Ids must be unique in `docs`."""
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            seq = self.last_seq()
            old = self._vids_of(con, [d.id for d in docs])
            vids = np.arange(seq + 1, seq + 1 + len(docs), dtype=np.int64)
            dead = [(old[d.id], int(v)) for d, v in zip(docs, vids, strict=True) if d.id in old]
            con.executemany("INSERT INTO tombstones (vid, seq) VALUES (?, ?)", dead)
            self._drop(con, [vid for vid, _ in dead])
            blob = np.ascontiguousarray(vectors, dtype="<f4")
            meta = [json.dumps(d.metadata, ensure_ascii=False) for d in docs]
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
            self._set_seq(con, seq + len(docs))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return vids, np.array([d for d, _ in dead], dtype=np.int64)

    def delete(self, ids: Sequence[str]) -> np.ndarray:
        """Delete in one transaction; the vids removed (absent ids are skipped)."""
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            seq = self.last_seq()
            old = self._vids_of(con, list(dict.fromkeys(ids)))
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
        for table in ("docs", "texts", "vectors"):
            con.executemany(f"DELETE FROM {table} WHERE vid = ?", [(v,) for v in vids])

    @staticmethod
    def _vids_of(con: sqlite3.Connection, ids: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for part in _chunks(list(ids)):
            marks = ",".join("?" * len(part))
            out.update(con.execute(f"SELECT id, vid FROM docs WHERE id IN ({marks})", part))
        return out

    @staticmethod
    def _set_seq(con: sqlite3.Connection, seq: int) -> None:
        con.execute("UPDATE meta SET value = ? WHERE key = 'last_seq'", (seq,))

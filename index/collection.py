"""A collection: the SQLite store (truth) and a FAISS index (its cache) kept consistent, on disk.

Writes commit to SQLite first (that is the acknowledgement), then update the in-memory index. The
index is saved now and then as a snapshot that records the last sequence it contains; opening loads
the snapshot and catches up from SQLite, or rebuilds from SQLite when the snapshot is missing,
corrupt or from another format. Other processes' writes are picked up before each search.

Rebuilds (a new index type is due, HNSW tombstones piled up) and snapshots run on the handle's
maintenance thread (index/background.py), never inside a request: a rebuild reads the store at
some sequence S without any lock, then catches the new index up to the store's present under the
write lock for a moment and swaps it in. Tombstones it needs could be pruned meanwhile by a
snapshot (of this or another process): it checks `pruned_through <= S` while catching up and
starts over if not. Until the swap, searches and writes use the old index as usual.

Every handle holds `open.lock` shared while open (index/locking.py), so a reindex refuses to
swap the directory under it; and opening first finishes or undoes a swap a crash interrupted
(index/persistence.py), so an empty collection is never created in place of a moved one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from semsearch.index import filters
from semsearch.index.background import Worker
from semsearch.index.building import advance, build_from_store, empty_index_for
from semsearch.index.config import IndexConfig
from semsearch.index.declarations import Declarations
from semsearch.index.documents import Doc, Hit
from semsearch.index.errors import (
    Busy,
    DimensionMismatch,
    FilterError,
    InvalidArgument,
    ReadOnlyError,
)
from semsearch.index.faiss_index import FaissIndex
from semsearch.index.fusion import Fusion
from semsearch.index.ids import chunk_number
from semsearch.index.limits import Limits
from semsearch.index.locking import OpenHold, RWLock, writer_lock
from semsearch.index.maintenance import REBUILD, SNAPSHOT_JOB, Maintenance
from semsearch.index.opening import ensure_keywords, hold_directory, resolve_manifest
from semsearch.index.persistence import (
    DATABASE,
    FORMAT_VERSION,
    SNAPSHOT,
    Manifest,
    bytes_on_disk,
    read_manifest,
    read_snapshot,
    write_manifest,
)
from semsearch.index.search import FilterCache, keyword_terms, search_index, unit_rows
from semsearch.index.store import Store

log = logging.getLogger(__name__)

_SNAPSHOT_EVERY = 50_000  # writes between automatic snapshots (SQLite has them all anyway)
_CONSISTENT_TRIES = 8


class Collection(Maintenance, Declarations):
    def __init__(
        self,
        directory: Path,
        manifest: Manifest,
        config: IndexConfig,
        read_only: bool,
        limits: Limits | None = None,
        background: bool = True,
        hold: OpenHold | None = None,
    ) -> None:
        self.directory = directory
        self.manifest = manifest
        self.config = config
        self.read_only = read_only
        self.limits = limits or Limits()
        self.store = Store(
            directory / DATABASE,
            query_timeout_s=self.limits.query_timeout_s,
            keyword_cache_bytes=self.limits.keyword_cache_mb << 20,
        )
        self._rw = RWLock()
        self._filter_cache = FilterCache()
        self._index: FaissIndex | None = None
        self._seq = 0  # last store sequence the in-memory index reflects
        self._snap_seq = -1  # sequence of the snapshot on disk (-1: none of ours)
        self._hold = hold  # our shared `open.lock`: no reindex swaps the directory under us
        self._closed = False
        self._worker = Worker(f"semsearch-maintain-{directory.name}", self._maintain, background)

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: str | Path,
        dim: int | None = None,
        encoder_fingerprint: dict[str, Any] | None = None,
        index_type: str | None = None,
        config: IndexConfig | None = None,
        read_only: bool = False,
        index_options: dict[str, Any] | None = None,
        limits: Limits | None = None,
        background: bool = True,
    ) -> Collection:
        """Open (or create) the collection in `directory`.

        `dim` and `encoder_fingerprint`, when given, must match what the collection was built with
        (DimensionMismatch / FingerprintMismatch otherwise); a new collection records them.
        `index_type` ("auto", "Flat", "HNSW32", "IVF1024,Flat"...) overrides the stored choice;
        `index_options` overrides single `IndexConfig` fields (`{"ef_search": 128}`); `config`
        replaces the whole stored configuration. `limits` bounds what one call may cost.
        `background=False` runs rebuilds and snapshots inline, right after the write that made
        them due (batch builds, deterministic tests); else on a maintenance thread.
        """
        directory = Path(directory)
        limits = limits or Limits()
        hold = hold_directory(directory, read_only, limits.lock_timeout_s)
        try:
            manifest, settings = resolve_manifest(
                directory, dim, encoder_fingerprint, index_type, config, read_only,
                index_options, limits,
            )  # fmt: skip
            col = cls(directory, manifest, settings, read_only, limits, background, hold)
        except BaseException:
            hold.release()
            raise
        try:
            with col._rw.write():
                col._load()
            if not read_only:  # a collection made before keyword search gets its index now
                ensure_keywords(col.store, directory, read_only, limits)
        except BaseException:
            col.store.close()
            hold.release()
            raise
        col._worker.run_pending()
        return col

    def _load(self) -> None:
        """Snapshot + catch-up, or a build from SQLite (caller holds the write lock).

        A usable snapshot that wants a rebuild (another type is due) serves until the background
        rebuild replaces it; without one, opening has to build the index itself."""
        dim = self.manifest.dim
        if dim is None:
            return
        snap = read_snapshot(self.directory / SNAPSHOT)
        with self.store.snapshot():
            last, pruned = self.store.last_seq(), self.store.pruned_through()
        if snap is not None:
            header, payload = snap
            seq = int(header.get("seq", -1))
            if header.get("dim") == dim and pruned <= seq <= last:
                self._index = FaissIndex.from_bytes(header, payload, self.config)
                self._seq = self._snap_seq = seq
                self._catch_up()
                if self._wants_rebuild():
                    self._worker.request(REBUILD)
                return
            log.warning("snapshot in %s does not match the store; rebuilding", self.directory)
        elif last:
            log.info("no usable snapshot in %s; rebuilding the index from SQLite", self.directory)
        self._index, self._seq = self._build()
        if not self.read_only:
            self._worker.request(SNAPSHOT_JOB)

    # -- keeping the index in step with the store ----------------------------------------------

    def _build(self) -> tuple[FaissIndex, int]:
        """A new index over the store's live vectors (no lock needed), and its sequence."""
        assert self.manifest.dim is not None
        return build_from_store(self.store, self.manifest.dim, self.config, self.directory)

    def _catch_up(self) -> None:
        """Apply store writes newer than the index (caller holds the write lock)."""
        assert self._index is not None
        seq = advance(self.store, self._index, self._seq)
        if seq is None:
            # A newer snapshot was saved and the tombstones we need pruned: reload that.
            self._load_snapshot_or_rebuild()
        else:
            self._seq = seq
        if self._too_many_tombstones():
            self._worker.request(REBUILD)  # readers compact their own copy too

    def _load_snapshot_or_rebuild(self) -> None:
        """The index from the snapshot on disk, else from SQLite (caller holds the write lock)."""
        snap = read_snapshot(self.directory / SNAPSHOT)
        if snap is not None and int(snap[0].get("seq", -1)) >= self.store.pruned_through():
            index = FaissIndex.from_bytes(snap[0], snap[1], self.config)
            seq = advance(self.store, index, int(snap[0]["seq"]))
            if seq is not None:
                self._index, self._seq = index, seq
                return
        self._index, self._seq = self._build()

    def wait_idle(self, timeout_s: float | None = None) -> bool:
        """Wait for queued rebuilds and snapshots; False if `timeout_s` passed first."""
        return self._worker.wait_idle(timeout_s)

    # -- writes --------------------------------------------------------------------------------

    def upsert(
        self,
        docs: Sequence[Doc | dict[str, Any]],
        vectors: np.ndarray,
        families: Sequence[str] = (),
    ) -> list[str]:
        """Insert or replace documents with their vectors (n, dim); returns the ids in order.
        `families`: documents whose stored forms (the id itself, its chunks `<id>#chunk-<n>`) not
        written now are deleted in the same transaction (a document re-chunked, or no longer)."""
        items = [Doc.coerce(d, self.limits) for d in docs]
        vectors = unit_rows(vectors)
        if len(items) != len(vectors):
            raise InvalidArgument(f"{len(items)} documents but {len(vectors)} vectors")
        ids = [d.id for d in items]
        if not items:
            return ids
        # The last version of an id repeated within one call wins, as if written one by one.
        last = {d.id: i for i, d in enumerate(items)}
        keep = sorted(last.values())
        items, vectors = [items[i] for i in keep], vectors[keep]
        self._check_writable()
        with self._rw.write(), writer_lock(self.directory, self.limits.lock_timeout_s):
            self._ensure_dim(vectors.shape[1])
            assert self._index is not None
            self._catch_up()
            if self._index.ntotal == 0 and not self._index.tombstones:
                # Nothing to migrate yet: start with the type this batch calls for, no rebuild.
                self._index = empty_index_for(vectors, self.config)
            vids, dead = self.store.write(items, vectors, families)
            self._index.remove(dead)
            self._index.add(vids, vectors)
            self._seq = self.store.last_seq()
            self._after_write()
        self._worker.run_pending()
        return ids

    def delete(self, ids: Iterable[str], families: bool = False) -> int:
        """Delete these ids (`families`: and their chunks); returns how many were stored."""
        ids = list(ids)
        return self._delete(lambda: self.store.delete(ids, families))

    def delete_where(self, filter: dict[str, Any]) -> int:
        """Delete every document matching `filter` (the search filter language) in one
        transaction; returns how many. An empty filter is refused: delete by ids, or drop the
        collection's directory, to delete everything on purpose."""
        where, params = self._where(filter)
        if where == "1":
            raise FilterError("delete by filter needs a filter with at least one condition")
        return self._delete(lambda: self.store.delete_where(where, params))

    def _delete(self, delete_in_store: Callable[[], np.ndarray]) -> int:
        self._check_writable()
        with self._rw.write(), writer_lock(self.directory, self.limits.lock_timeout_s):
            if self._index is not None:
                self._catch_up()
            dead = delete_in_store()
            if self._index is not None:
                self._index.remove(dead)
                self._seq = self.store.last_seq()
                self._after_write()
        self._worker.run_pending()
        return len(dead)

    def _after_write(self) -> None:
        """Queue what the write made due; it runs after the locks are released."""
        assert self._index is not None
        if self._wants_rebuild():
            self._worker.request(REBUILD)
        elif self._seq - self._snap_seq >= max(_SNAPSHOT_EVERY, self._index.ntotal // 2):
            self._worker.request(SNAPSHOT_JOB)

    def _ensure_dim(self, dim: int) -> None:
        if self.manifest.dim is None:
            on_disk = read_manifest(self.directory)  # another process may have set it since
            if on_disk is not None and on_disk.dim is not None:
                self.manifest.dim = on_disk.dim
        if self.manifest.dim is None:
            self.manifest.dim = dim
            write_manifest(self.directory, self.manifest)
            self._index = FaissIndex(dim, self.config.factory_for(0), self.config)
            self._seq = self.store.last_seq()
        elif dim != self.manifest.dim:
            raise DimensionMismatch(
                f"vectors have dimension {dim}, the collection in {self.directory} has "
                f"{self.manifest.dim}; use the encoder it was built with or rebuild it"
            )
        elif self._index is None:
            self._index, self._seq = self._build()

    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyError(f"collection {self.directory} was opened read-only")

    def save(self) -> None:
        """Snapshot the index now, after any queued rebuild (also done on close and every so
        many writes)."""
        self._check_writable()
        self.wait_idle()
        with self._rw.write():
            if self._index is not None:
                self._catch_up()
        self._save_snapshot()

    def close(self) -> None:
        """Finish background work, save a snapshot if the index moved on, release the files."""
        if self._closed:
            return
        try:
            self._worker.close()
            self._closed = True
            if not self.read_only and self._index is not None and self._seq != self._snap_seq:
                try:
                    self.save()
                except Busy as exc:  # SQLite has every write; the next open catches up from it
                    log.warning("closing %s without a fresh snapshot: %s", self.directory, exc)
            if not self.read_only:
                self.store.checkpoint()
        finally:
            self._closed = True
            self.store.close()
            if self._hold is not None:
                self._hold.release()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reads ---------------------------------------------------------------------------------

    def get(self, doc_id: str) -> Doc | None:
        return self.store.get(doc_id)

    def count(self, filter: dict[str, Any] | None = None) -> int:
        """Documents in the collection, or those matching `filter`."""
        where, params = self._where(filter)
        return self.store.count() if where == "1" else self.store.count_where(where, params)

    def scroll(
        self, after: str = "", limit: int = 100, filter: dict[str, Any] | None = None
    ) -> list[Doc]:
        """A page of documents in id order: up to `limit` with an id after `after` ("" for the
        first page) that match `filter`. Pass the last id of a page to get the next: every
        document stored throughout is returned exactly once, whatever is written meanwhile."""
        where, params = self._where(filter)
        return self.store.scroll(after, limit, where, params)

    def families(self, parents: Sequence[str]) -> dict[str, Doc]:
        """Every stored form of these documents (each id itself, its chunks), by id."""
        return self.store.families(parents)

    def iter_ids(self, chunk: int = 4_096) -> Iterable[list[str]]:
        return self.store.iter_ids(chunk)

    def _where(self, filter: dict[str, Any] | None) -> tuple[str, list[Any]]:
        """The filter as SQL, written to use the declared fields' expression indexes."""
        indexed = frozenset(self.store.indexed_fields()) if filter else frozenset()
        return filters.to_sql(filter, self.limits.max_filter_conditions, indexed)

    def chunks_of(self, parent: str) -> list[Doc]:
        """The chunks stored for document `parent`, in order (none: it is stored whole, or not)."""
        numbered = [(chunk_number(parent, i), d) for i, d in self.families([parent]).items()]
        return [d for n, d in sorted(numbered, key=lambda x: x[0] or 0) if n is not None]

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        return self.store.existing_ids(ids)

    def iter_docs(self, chunk: int = 1_024) -> Iterable[list[Doc]]:
        return self.store.iter_docs(chunk)

    def refresh(self) -> None:
        """Pick up writes made by other processes (done before every search)."""
        if self._index is None:
            if self.manifest.dim is None:
                on_disk = read_manifest(self.directory)
                if on_disk is None or on_disk.dim is None:
                    return
                self.manifest = on_disk
            with self._rw.write():
                if self._index is None:  # the first vectors, written by another process
                    self._index, self._seq = self._build()
            return
        if self.store.last_seq() != self._seq:
            with self._rw.write():
                self._catch_up()
        self._worker.run_pending()

    def search(
        self,
        vector: np.ndarray | Sequence[float] | None,
        k: int = 10,
        filter: dict[str, Any] | None = None,
        score_threshold: float | None = None,
        *,
        text: str | None = None,
        mode: str = "dense",
        fusion: Fusion | None = None,
    ) -> list[Hit]:
        """The `k` best documents that match `filter`, best first. `mode` "dense": most similar
        (cosine) to `vector`; "keyword": BM25 over `text`'s terms (index/keywords.py; no vector
        needed); "hybrid": both, fused by reciprocal rank (`fusion`, default `Fusion()`).
        `score_threshold` applies to the hits' score: cosine, BM25 or fused."""
        try:
            return self._search(vector, k, filter, score_threshold, text, mode, fusion)
        finally:
            self._worker.run_pending()  # inline mode: a compaction the catch-up made due

    def _search(
        self,
        vector: np.ndarray | Sequence[float] | None,
        k: int,
        filter: dict[str, Any] | None,
        score_threshold: float | None,
        text: str | None,
        mode: str,
        fusion: Fusion | None,
    ) -> list[Hit]:
        if not isinstance(k, int) or k < 1:
            raise InvalidArgument(f"k must be a positive integer, got {k!r}")
        where, params = self._where(filter)  # validate before anything else
        terms = keyword_terms(text, mode, self.limits)
        query = None if mode == "keyword" else unit_rows(vector)
        if query is not None and len(query) != 1:
            raise InvalidArgument(f"search takes one vector, got {len(query)}")
        if mode != "dense":
            ensure_keywords(self.store, self.directory, self.read_only, self.limits)
        if self._index is None:
            self.refresh()  # another process may have written the first vectors meanwhile
        for attempt in range(_CONSISTENT_TRIES):
            # One read transaction pins the store at `last`; search only an index at that same
            # sequence, so hits, texts and metadata all come from one state even while other
            # threads or processes write. After a few tries lost to a busy writer of this
            # handle, hold its lock: the index cannot move then, and we catch it up ourselves.
            exclusive = attempt == _CONSISTENT_TRIES - 1
            with self._rw.write() if exclusive else nullcontext(), self.store.snapshot():
                last = self.store.last_seq()
                if self._index is not None and self._seq < last:
                    with nullcontext() if exclusive else self._rw.write():
                        if self._seq < last:
                            self._catch_up()
                with nullcontext() if exclusive else self._rw.read():
                    if self._seq != last:
                        assert not exclusive, "the index moved while its lock was held"
                        continue  # another thread moved the index past our view: look again
                    if self._index is None:
                        return []
                    allowed = None
                    if filter:
                        allowed = self._filter_cache.allowed(self.store, last, where, params)
                    return search_index(
                        self._index,
                        self.store,
                        self.config,
                        query,
                        k,
                        where if filter else None,
                        params,
                        score_threshold,
                        allowed,
                        terms=terms,
                        fusion=(fusion or Fusion()) if mode == "hybrid" else None,
                    )
        raise AssertionError("unreachable")

    def info(self) -> dict[str, Any]:
        return {
            "count": self.count(),
            "dim": self.manifest.dim,
            "metric": self.manifest.metric,
            "index_type": self.config.index_type,
            "factory": self._index.factory if self._index is not None else None,
            "tombstones": self._index.tombstones if self._index is not None else 0,
            "keyword_count": self.store.keyword_count(),  # null: no keyword index built yet
            "chunking": self.chunking(),
            "encoder_fingerprint": self.manifest.encoder_fingerprint,
            "format_version": FORMAT_VERSION,
            "bytes_on_disk": bytes_on_disk(self.directory),
            "directory": str(self.directory),
        }

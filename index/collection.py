"""A collection: the SQLite store (truth) and a FAISS index (its cache) kept consistent, on disk.

Writes commit to SQLite first (that is the acknowledgement), then update the in-memory index. The
index is saved now and then as a snapshot that records the last sequence it contains; opening loads
the snapshot and catches up from SQLite, or rebuilds from SQLite when the snapshot is missing,
corrupt or from another format. Other processes' writes are picked up before each search.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from index import filters
from index.config import IndexConfig, normalize_type
from index.documents import Doc, Hit
from index.errors import (
    DimensionMismatch,
    FingerprintMismatch,
    InvalidArgument,
    NotFound,
    ReadOnlyError,
)
from index.faiss_index import FaissIndex
from index.limits import Limits
from index.locking import RWLock, writer_lock
from index.persistence import (
    DATABASE,
    FORMAT_VERSION,
    SNAPSHOT,
    Manifest,
    bytes_on_disk,
    read_manifest,
    read_snapshot,
    remove_stale_temps,
    write_manifest,
    write_snapshot,
)
from index.search import FilterCache, search_index, unit_rows
from index.store import Store

log = logging.getLogger(__name__)

_SNAPSHOT_EVERY = 50_000  # writes between automatic snapshots (SQLite has them all anyway)
_CONSISTENT_TRIES = 8


class Collection:
    def __init__(
        self,
        directory: Path,
        manifest: Manifest,
        config: IndexConfig,
        read_only: bool,
        limits: Limits | None = None,
    ) -> None:
        self.directory = directory
        self.manifest = manifest
        self.config = config
        self.read_only = read_only
        self.limits = limits or Limits()
        self.store = Store(directory / DATABASE, query_timeout_s=self.limits.query_timeout_s)
        self._rw = RWLock()
        self._filter_cache = FilterCache()
        self._index: FaissIndex | None = None
        self._seq = 0  # last store sequence the in-memory index reflects
        self._snap_seq = -1  # sequence of the snapshot on disk (-1: none of ours)

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
    ) -> Collection:
        """Open (or create) the collection in `directory`.

        `dim` and `encoder_fingerprint`, when given, must match what the collection was built with
        (DimensionMismatch / FingerprintMismatch otherwise); a new collection records them.
        `index_type` ("auto", "Flat", "HNSW32", "IVF1024,Flat"...) overrides the stored choice;
        `index_options` overrides single `IndexConfig` fields (`{"ef_search": 128}`); `config`
        replaces the whole stored configuration. `limits` bounds what one call may cost.
        """
        directory = Path(directory)
        limits = limits or Limits()
        if read_only and read_manifest(directory) is None:
            raise NotFound(f"no collection in {directory} (no {directory / 'manifest.json'})")
        directory.mkdir(parents=True, exist_ok=True)
        if read_only:
            manifest = read_manifest(directory)
            assert manifest is not None
            _check(manifest, directory, dim, encoder_fingerprint)
        else:
            with writer_lock(directory, limits.lock_timeout_s):
                remove_stale_temps(directory)
                on_disk = read_manifest(directory)
                manifest = on_disk or Manifest(index=(config or IndexConfig()).to_dict())
                before = manifest.to_json() if on_disk else b""
                _check(manifest, directory, dim, encoder_fingerprint)
                manifest.dim = manifest.dim or dim
                manifest.encoder_fingerprint = manifest.encoder_fingerprint or encoder_fingerprint
                if config is not None:
                    manifest.index = config.to_dict()
                if index_type is not None:
                    manifest.index = {**manifest.index, "index_type": normalize_type(index_type)}
                if index_options:
                    unknown = set(index_options) - set(IndexConfig.__dataclass_fields__)
                    if unknown:
                        raise InvalidArgument(f"unknown index options {sorted(unknown)}")
                    merged = IndexConfig.from_dict({**manifest.index, **index_options})
                    manifest.index = merged.to_dict()  # validated by IndexConfig
                if manifest.to_json() != before:
                    write_manifest(directory, manifest)
        # A read-only handle may still tune its own searches (ef_search, nprobe) through `config`.
        settings = config if read_only and config is not None else manifest.index
        if isinstance(settings, dict):
            settings = IndexConfig.from_dict(settings)
        col = cls(directory, manifest, settings, read_only, limits)
        with col._rw.write():
            col._load()
        return col

    def _load(self) -> None:
        """Snapshot + catch-up, or a rebuild from SQLite (caller holds the write lock)."""
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
                if not self._wants_rebuild():
                    return
            else:
                log.warning("snapshot in %s does not match the store; rebuilding", self.directory)
        elif last:
            log.info("no usable snapshot in %s; rebuilding the index from SQLite", self.directory)
        self._rebuild()

    def _catch_up(self) -> None:
        """Apply store writes newer than the index (caller holds the write lock)."""
        assert self._index is not None
        with self.store.snapshot():
            last = self.store.last_seq()
            if last == self._seq:
                return
            # Tombstones we would need are pruned once a newer snapshot is on disk: reload that.
            stale = self.store.pruned_through() > self._seq
            if not stale:
                self._index.remove(self.store.tombstones_after(self._seq))
                for vids, vectors in self.store.iter_vectors(self._index.dim, after=self._seq):
                    self._index.add(vids, vectors)
                self._seq = last
                if self._too_many_tombstones():
                    self._rebuild(save=False)  # readers compact their own copy too
        if stale:
            self._load_snapshot_or_rebuild()

    def _load_snapshot_or_rebuild(self) -> None:
        snap = read_snapshot(self.directory / SNAPSHOT)
        if snap is None or int(snap[0].get("seq", -1)) < self.store.pruned_through():
            self._rebuild(save=False)
            return
        self._index = FaissIndex.from_bytes(snap[0], snap[1], self.config)
        self._seq = int(snap[0]["seq"])
        self._catch_up()

    def _wants_rebuild(self) -> bool:
        """A different index type is due (size crossed a threshold, IVF became trainable...)."""
        assert self._index is not None
        current, n = self._index.factory, self._index.ntotal
        if self._too_many_tombstones():
            return True
        kind = self.config.index_type
        if kind == "auto" and current.startswith("HNSW"):
            return n < self.config.flat_max // 2  # hysteresis: no flip-flopping at the boundary
        if kind == "IVF" and current.startswith("IVF"):
            return False  # nlist was sized when trained; keep it until the next rebuild
        return current != self.config.factory_for(n)

    def _too_many_tombstones(self) -> bool:
        assert self._index is not None
        limit = max(self.config.compact_min, self.config.compact_ratio * self._index.ntotal)
        return self._index.tombstones > limit

    def _rebuild(self, save: bool = True) -> None:
        """Build the index from every live vector in the store (caller holds the write lock)."""
        dim = self.manifest.dim
        assert dim is not None
        with self.store.snapshot():
            n = self.store.count()
            factory = self.config.factory_for(n)
            index = FaissIndex(dim, factory, self.config)
            if index.needs_training:
                nlist = self.config.nlist_for(n)
                index.train(self.store.sample_vectors(min(n, 256 * nlist), dim))
            for vids, vectors in self.store.iter_vectors(dim):
                index.add(vids, vectors)
            self._index, self._seq = index, self.store.last_seq()
        log.info("built %s index over %d vectors in %s", factory, n, self.directory)
        if save and not self.read_only:
            with writer_lock(self.directory, self.limits.lock_timeout_s):
                self._save_snapshot()

    def _save_snapshot(self) -> None:
        """Write the snapshot and prune the tombstones it reflects (caller holds both locks)."""
        assert self._index is not None
        header, payload = self._index.to_bytes()
        write_snapshot(self.directory / SNAPSHOT, {**header, "seq": self._seq}, payload)
        self.store.prune_tombstones(self._seq)
        self._snap_seq = self._seq

    # -- writes --------------------------------------------------------------------------------

    def upsert(self, docs: Sequence[Doc | dict[str, Any]], vectors: np.ndarray) -> list[str]:
        """Insert or replace documents with their vectors (n, dim); returns the ids in order."""
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
            vids, dead = self.store.write(items, vectors)
            self._index.remove(dead)
            self._index.add(vids, vectors)
            self._seq = int(vids[-1])
            self._after_write()
        return ids

    def delete(self, ids: Iterable[str]) -> int:
        """Delete these ids; returns how many existed."""
        ids = list(ids)
        self._check_writable()
        with self._rw.write(), writer_lock(self.directory, self.limits.lock_timeout_s):
            if self._index is not None:
                self._catch_up()
            dead = self.store.delete(ids)
            if self._index is not None:
                self._index.remove(dead)
                self._seq = self.store.last_seq()
                self._after_write()
        return len(dead)

    def _after_write(self) -> None:
        assert self._index is not None
        if self._wants_rebuild():
            self._rebuild(save=False)
            self._save_snapshot()
        elif self._seq - self._snap_seq >= max(_SNAPSHOT_EVERY, self._index.ntotal // 2):
            self._save_snapshot()

    def _ensure_dim(self, dim: int) -> None:
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
            self._rebuild(save=False)

    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyError(f"collection {self.directory} was opened read-only")

    def save(self) -> None:
        """Snapshot the index now (also done on close and every so many writes)."""
        self._check_writable()
        with self._rw.write(), writer_lock(self.directory, self.limits.lock_timeout_s):
            if self._index is not None:
                self._catch_up()
                self._save_snapshot()

    def close(self) -> None:
        if not self.read_only and self._index is not None and self._seq != self._snap_seq:
            self.save()
        if not self.read_only:
            self.store.checkpoint()
        self.store.close()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reads ---------------------------------------------------------------------------------

    def get(self, doc_id: str) -> Doc | None:
        return self.store.get(doc_id)

    def count(self) -> int:
        return self.store.count()

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
                if self._index is None:
                    self._rebuild(save=False)
            return
        if self.store.last_seq() != self._seq:
            with self._rw.write():
                self._catch_up()

    def search(
        self,
        vector: np.ndarray | Sequence[float],
        k: int = 10,
        filter: dict[str, Any] | None = None,
        score_threshold: float | None = None,
    ) -> list[Hit]:
        """The `k` documents most similar (cosine) to `vector` that match `filter`, best first."""
        if not isinstance(k, int) or k < 1:
            raise InvalidArgument(f"k must be a positive integer, got {k!r}")
        where, params = filters.to_sql(  # validate before anything else
            filter, max_conditions=self.limits.max_filter_conditions
        )
        query = unit_rows(vector)
        if len(query) != 1:
            raise InvalidArgument(f"search takes one vector, got {len(query)}")
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
            "encoder_fingerprint": self.manifest.encoder_fingerprint,
            "format_version": FORMAT_VERSION,
            "bytes_on_disk": bytes_on_disk(self.directory),
            "directory": str(self.directory),
        }


def _check(
    manifest: Manifest, directory: Path, dim: int | None, fingerprint: dict[str, Any] | None
) -> None:
    if dim is not None and manifest.dim is not None and dim != manifest.dim:
        raise DimensionMismatch(
            f"the collection in {directory} holds {manifest.dim}-dimensional vectors, the encoder "
            f"makes {dim}; use the encoder it was built with, or rebuild it with --reindex"
        )
    old = manifest.encoder_fingerprint
    if fingerprint is not None and old is not None and fingerprint != old:
        keys = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
        diff = ", ".join(f"{k}: {old.get(k)!r} -> {fingerprint.get(k)!r}" for k in keys)
        raise FingerprintMismatch(
            f"the collection in {directory} was built with another encoder ({diff}); its vectors "
            "are not comparable. Use the original encoder, or re-embed with "
            "`semsearch index build --reindex`."
        )

"""A collection's upkeep: deciding when its index needs a rebuild, rebuilding it without blocking
searches and writes, and saving snapshots (index/collection.py's docstring tells the story). Run
by the handle's maintenance thread (index/background.py), never inside a request."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from semsearch.index.building import advance
from semsearch.index.config import IndexConfig
from semsearch.index.limits import Limits
from semsearch.index.locking import RWLock, writer_lock
from semsearch.index.persistence import SNAPSHOT, write_snapshot
from semsearch.index.store import Store

if TYPE_CHECKING:
    from semsearch.index.faiss_index import FaissIndex

log = logging.getLogger(__name__)

_REBUILD_TRIES = 3  # a rebuild whose tombstones were pruned under it starts over, this often
REBUILD, SNAPSHOT_JOB = "rebuild", "snapshot"


class Maintenance:
    """The upkeep half of `Collection`, which holds these attributes."""

    directory: Path
    config: IndexConfig
    limits: Limits
    store: Store
    read_only: bool
    _index: FaissIndex | None
    _seq: int
    _snap_seq: int
    _rw: RWLock

    def _build(self) -> tuple[FaissIndex, int]:
        raise NotImplementedError

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

    # -- maintenance (the background thread, or inline after a write) --------------------------

    def _maintain(self, job: str) -> None:
        if job == REBUILD:
            self._rebuild_and_swap()
        elif job == SNAPSHOT_JOB:
            self._save_snapshot()

    def _rebuild_and_swap(self) -> None:
        """Build a new index without blocking anyone, swap it in after a short catch-up."""
        if self._index is None:
            return
        for _ in range(_REBUILD_TRIES):
            index, seq = self._build()
            caught = advance(self.store, index, seq)  # most of the backlog, still without a lock
            if caught is None:
                continue
            with self._rw.write():
                caught = advance(self.store, index, caught)  # the last few writes: a short pause
                if caught is None:
                    continue
                self._index, self._seq = index, caught
            if not self.read_only:
                self._save_snapshot()
            return
        log.warning(
            "rebuilding the index of %s: tombstones were pruned under %d tries; retried when due",
            self.directory,
            _REBUILD_TRIES,
        )

    def _save_snapshot(self) -> None:
        """Write a snapshot of the index and prune the tombstones it reflects.

        Serializing takes the read lock (searches go on, writes wait); the file is written under
        the writer lock alone."""
        with self._rw.read():
            if self._index is None or self._seq <= self._snap_seq:
                return
            header, payload = self._index.to_bytes()
            seq = self._seq
        with writer_lock(self.directory, self.limits.lock_timeout_s):
            if self.store.pruned_through() > seq:
                return  # another handle saved a newer snapshot: ours would be unusable
            write_snapshot(self.directory / SNAPSHOT, {**header, "seq": seq}, payload)
            self.store.prune_tombstones(seq)
        self._snap_seq = max(self._snap_seq, seq)

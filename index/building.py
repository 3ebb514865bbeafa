"""Building a FAISS index from the store, and bringing an index up to the store's present.

Pure functions of the store and the settings: they read one consistent state of SQLite (a WAL
read transaction) and touch nothing the collection shares, so they need no lock and can run on
the maintenance thread while searches and writes go on.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from semsearch.index.config import IndexConfig
from semsearch.index.faiss_index import FaissIndex
from semsearch.index.store import Store

log = logging.getLogger(__name__)


def build_from_store(
    store: Store, dim: int, config: IndexConfig, where: Path
) -> tuple[FaissIndex, int]:
    """A new index over every live vector in the store, and the sequence it reflects."""
    with store.snapshot():
        n = store.count()
        factory = config.factory_for(n)
        index = FaissIndex(dim, factory, config)
        if index.needs_training:
            index.train(store.sample_vectors(config.train_size(n), dim))
        for vids, vectors in store.iter_vectors(dim):
            index.add(vids, vectors)
        seq = store.last_seq()
    log.info("built %s index over %d vectors in %s", factory, n, where)
    return index, seq


def advance(store: Store, index: FaissIndex, seq: int) -> int | None:
    """Apply store writes after `seq` to `index`; the sequence it is at now, or None (and
    `index` untouched) when tombstones it would need have been pruned."""
    with store.snapshot():
        last = store.last_seq()
        if last == seq:
            return seq
        if store.pruned_through() > seq:
            return None
        index.remove(store.tombstones_after(seq))
        for vids, vectors in store.iter_vectors(index.dim, after=seq):
            index.add(vids, vectors)
        return last


def empty_index_for(vectors: np.ndarray, config: IndexConfig) -> FaissIndex:
    """An empty index of the type `len(vectors)` vectors call for, trained on them if it
    learns from data (IVF, SQ8, PQ)."""
    n = len(vectors)
    index = FaissIndex(vectors.shape[1], config.factory_for(n), config)
    if index.needs_training:
        want = config.train_size(n)
        index.train(vectors[:: max(1, n // want)][:want])
    return index

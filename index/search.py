"""One search over an index and its store, already pinned to the same state by the caller.

Pre-filtering: the store returns the ids of the documents matching the filter; a small subset is
searched exactly (its vectors straight from SQLite), a large one through a FAISS `IDSelector`, and a
selector search that comes back short of k is redone exactly. So a filtered search returns `k` hits
whenever `k` documents match.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from semsearch.index.base import VectorIndex
from semsearch.index.config import IndexConfig
from semsearch.index.documents import Hit
from semsearch.index.errors import DimensionMismatch, InvalidArgument
from semsearch.index.store import Store

log = logging.getLogger(__name__)


class FilterCache:
    """Matching ids per (store sequence, filter): a repeated filter skips the SQL scan (~50 ms
    at 100k documents); any write moves the sequence on, so stale entries are never used."""

    def __init__(self, entries: int = 32, max_ids: int = 1_000_000) -> None:
        self._entries, self._max_ids = entries, max_ids
        self._cache: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def allowed(self, store: Store, seq: int, where: str, params: list[Any]) -> np.ndarray:
        # Typed: Python holds True == 1 == 1.0 (same hash), SQLite does not. The JSON paths of
        # the field names are among the params, so filters on different fields never share.
        key = (seq, where, *((type(p).__name__, p) for p in params))
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        vids = store.filter_vids(where, params)
        if len(vids) <= self._max_ids:
            with self._lock:
                self._cache[key] = vids
                while len(self._cache) > self._entries:
                    self._cache.popitem(last=False)
        return vids


def search_index(
    index: VectorIndex,
    store: Store,
    config: IndexConfig,
    query: np.ndarray,
    k: int,
    where: str | None,
    params: list[Any],
    score_threshold: float | None,
    allowed: np.ndarray | None = None,
) -> list[Hit]:
    """Hits for one unit `query` (1, dim); `where` is the compiled filter (None: no filter),
    `allowed` the ids matching it when the caller already has them."""
    if query.shape[1] != index.dim:
        raise DimensionMismatch(
            f"query has dimension {query.shape[1]}, the collection has {index.dim}"
        )
    if where is not None:
        if allowed is None:
            allowed = store.filter_vids(where, params)
        scores, vids = _filtered(index, store, config, query, k, allowed)
    else:
        scores, vids = index.search(query, k)
        scores, vids = scores[0], vids[0]
    keep = vids >= 0
    if score_threshold is not None:
        keep &= scores.astype(np.float64) >= score_threshold  # a huge threshold: no overflow
    scores, vids = scores[keep], vids[keep]
    docs = store.docs_by_vids(vids.tolist())
    return [
        Hit(doc.id, float(s), doc.text, doc.metadata)
        for s, v in zip(scores, vids, strict=True)
        if (doc := docs.get(int(v))) is not None  # only if the caller could not pin one state
    ]


def _filtered(
    index: VectorIndex,
    store: Store,
    config: IndexConfig,
    query: np.ndarray,
    k: int,
    allowed: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    if not len(allowed):
        return np.empty(0, np.float32), np.empty(0, np.int64)
    exact = index.factory == "Flat"  # a selector over Flat is already exact
    if exact or len(allowed) > max(k, config.exact_filter_max):
        scores, vids = index.search(query, k, allowed=allowed)
        if exact or (vids[0] >= 0).sum() >= min(k, len(allowed)):
            return scores[0], vids[0]
        log.debug("selector search came back short; searching %d docs exactly", len(allowed))
    found, vectors = store.vectors_by_vids(allowed.tolist(), index.dim)
    sims = vectors @ query[0]  # (m,)
    top = np.argsort(-sims, kind="stable")[:k]
    return sims[top].astype(np.float32), found[top]


def unit_rows(vectors: np.ndarray | Sequence[float]) -> np.ndarray:
    """float32 (n, dim), rows L2-normalized so inner product is cosine similarity."""
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]  # (1, dim)
    if x.ndim != 2 or x.shape[1] == 0:
        raise InvalidArgument(f"vectors must be (n, dim), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InvalidArgument("vectors contain NaN or infinity")
    norms = np.linalg.norm(x, axis=1, keepdims=True)  # (n, 1)
    if (norms == 0).any():
        raise InvalidArgument("a zero vector has no direction; cosine similarity is undefined")
    return np.ascontiguousarray(x / norms)

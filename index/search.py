"""One search over an index and its store, already pinned to the same state by the caller.

Pre-filtering: the store returns the ids of the documents matching the filter; a small subset is
searched exactly (its vectors straight from SQLite), a large one through a FAISS `IDSelector`, and a
selector search that comes back short of k is redone exactly. So a filtered search returns `k` hits
whenever `k` documents match.

Keyword search ranks by BM25 in the store's FTS5 index (index/fulltext.py), the filter's SQL joined
to it; hybrid search takes each side's best `Fusion.depth(k)` under the same filter and fuses them
by reciprocal rank (index/fusion.py). Both read the same pinned state as the dense side.
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
from semsearch.index.fusion import MODES, Found, Fusion, fuse
from semsearch.index.keywords import query_terms
from semsearch.index.limits import Limits
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
    query: np.ndarray | None,
    k: int,
    where: str | None,
    params: list[Any],
    score_threshold: float | None,
    allowed: np.ndarray | None = None,
    *,
    terms: list[str] | None = None,
    fusion: Fusion | None = None,
) -> list[Hit]:
    """Hits for one unit `query` (1, dim); `where` is the compiled filter (None: no filter),
    `allowed` the ids matching it when the caller already has them. With `terms` (the query's
    keyword terms), a keyword search, or with `fusion` too a hybrid one (`ranked_search`)."""
    if terms is not None or fusion is not None:
        return ranked_search(
            index, store, config, query, terms or [], k, where, params, score_threshold,
            allowed, fusion,
        )  # fmt: skip
    assert query is not None, "a dense search needs a query vector"
    scores, vids = dense_ranking(index, store, config, query, k, where, params, allowed)
    if score_threshold is not None:
        keep = scores.astype(np.float64) >= score_threshold  # a huge threshold: no overflow
        scores, vids = scores[keep], vids[keep]
    return hits_of(store, vids.tolist(), scores.tolist())


def dense_ranking(
    index: VectorIndex,
    store: Store,
    config: IndexConfig,
    query: np.ndarray,
    k: int,
    where: str | None,
    params: list[Any],
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`(cosines, vids)` of the best `k` documents for `query` matching the filter, best first."""
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
    return scores[keep], vids[keep]


def hits_of(
    store: Store,
    vids: Sequence[int],
    scores: Sequence[float],
    found_by: Sequence[dict[str, Found]] | None = None,
) -> list[Hit]:
    """The stored documents of `vids` as hits, in that order."""
    docs = store.docs_by_vids(vids)
    extra = found_by if found_by is not None else [None] * len(vids)
    return [
        Hit(doc.id, float(s), doc.text, doc.metadata, f)
        for v, s, f in zip(vids, scores, extra, strict=True)
        if (doc := docs.get(int(v))) is not None  # only if the caller could not pin one state
    ]


def keyword_terms(text: str | None, mode: str, limits: Limits) -> list[str] | None:
    """The terms a `mode` search asks for by keyword (None for "dense"); InvalidArgument for an
    unknown mode, a missing text, or more than `limits.max_keyword_terms` distinct terms."""
    if mode not in MODES:
        raise InvalidArgument(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "dense":
        return None
    if not isinstance(text, str):
        raise InvalidArgument(f"a {mode} search needs the query's text, got {type(text).__name__}")
    terms = query_terms(text)
    if len(terms) > limits.max_keyword_terms:
        raise InvalidArgument(
            f"the query has {len(terms)} distinct keyword terms, more than the "
            f"{limits.max_keyword_terms} a {mode} search takes (SEMSEARCH_MAX_KEYWORD_TERMS); "
            "shorten it, or search in mode dense"
        )
    return terms


def ranked_search(
    index: VectorIndex | None,
    store: Store,
    config: IndexConfig,
    query: np.ndarray | None,
    terms: list[str],
    k: int,
    where: str | None,
    params: list[Any],
    score_threshold: float | None,
    allowed: np.ndarray | None,
    fusion: Fusion | None,
) -> list[Hit]:
    """A keyword search (`fusion` None: BM25 alone) or a hybrid one (both sides' best
    `fusion.depth(k)`, fused by reciprocal rank); `score_threshold` applies to the hits' score.
    Every hit says where each side ranked it (`Hit.found_by`)."""
    depth = k if fusion is None else fusion.depth(k)
    rankings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if terms:  # a query of punctuation alone has no terms, and finds nothing by keyword
        if where is not None and allowed is None:
            allowed = store.filter_vids(where, params)
        rankings["keyword"] = store.keyword_search(terms, depth, allowed)
    if fusion is None:
        vids, bm25 = rankings.get("keyword", (np.empty(0, np.int64), np.empty(0)))
        found = [{"keyword": Found(r, float(s))} for r, s in enumerate(bm25.tolist(), 1)]
        return _threshold(store, vids.tolist(), bm25.tolist(), found, score_threshold)
    if index is not None and query is not None:
        cosines, vids = dense_ranking(index, store, config, query, depth, where, params, allowed)
        rankings["dense"] = (vids, cosines)
    fused = fuse(rankings, fusion)[:k]
    return _threshold(
        store,
        [f.vid for f in fused],
        [f.score for f in fused],
        [f.found_by for f in fused],
        score_threshold,
    )


def _threshold(
    store: Store,
    vids: list[int],
    scores: list[float],
    found_by: list[dict[str, Found]],
    score_threshold: float | None,
) -> list[Hit]:
    if score_threshold is not None:
        keep = [i for i, s in enumerate(scores) if s >= score_threshold]
        vids, scores, found_by = (
            [vids[i] for i in keep],
            [scores[i] for i in keep],
            [found_by[i] for i in keep],
        )
    return hits_of(store, vids, scores, found_by)


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

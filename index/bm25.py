"""Keyword search: FTS5's BM25, scored in memory with numpy instead of by FTS5's `bm25()`.

FTS5 keeps the postings (index/fulltext.py) but has no top-k pruning: `bm25()` scores, one call
per document, every document holding any query term, which at 100,000 documents is tens of
milliseconds for a median query. This class keeps what BM25 needs as arrays: every document's
length (FTS5's docsize), and the postings of the terms that queries ask for (read from FTS5 on
first use, then kept in an LRU bounded in bytes), and scores a query in a few vectorized passes
over its terms' postings.

The score is FTS5's `bm25()` (k1 = 1.2, b = 0.75), in its floating-point order:

    idf(t) = log((N - n(t) + 0.5) / (n(t) + 0.5)), 1e-6 where that is <= 0
    score(d) = sum over the query's terms t in order of
               idf(t) * (f(t, d) * (k1 + 1)) / (f(t, d) + k1 * (1 - b + b * |d| / avgdl))

A query's terms found in at least half the documents are left out when one of its other terms is
in some document (index/fulltext.py says why): their postings are the longest, and their IDF is
clamped to 1e-6.

It reflects one write sequence of the store, like the vector index. A search pinned at a later
sequence catches it up from the store: new documents' lengths from FTS5, and when terms are
cached, the new texts tokenized to extend their postings and document counts; removed documents
are marked dead (cached postings drop them when next used; cached counts of terms without
postings are forgotten, since the removed texts are gone). It starts over instead when the
tombstones it would need were pruned, when the keyword index was rebuilt, when more than
`_MAX_CATCH_UP` documents are new and terms are cached (reading them again is cheaper than
tokenizing), or when half its slots are dead.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from semsearch.index.keywords import index_terms

K1, B = 1.2, 0.75
IDF_FLOOR = 1e-6
_MAX_CATCH_UP = 1_000  # new documents tokenized to extend cached postings; past it, start over


class KeywordSource(Protocol):
    """What the index reads from the store (index/store.py), all inside the caller's read
    transaction, so every read sees the one state the search is pinned at."""

    def keyword_state(self) -> tuple[int, int]: ...  # (sequence the FTS5 index reflects, build)
    def pruned_through(self) -> int: ...  # tombstones up to this sequence are forgotten
    def tombstones_after(self, seq: int) -> np.ndarray: ...  # vids live at `seq`, gone since
    def keyword_lengths(self, after: int) -> tuple[np.ndarray, np.ndarray]: ...  # (vids, tokens)
    def texts_after(self, vid: int) -> Iterable[tuple[int, str]]: ...  # ascending vids
    def keyword_doc_frequency(self, term: str) -> int: ...
    def keyword_postings(self, term: str) -> tuple[np.ndarray, np.ndarray]: ...  # (vids, tf)


@dataclass(frozen=True)
class _Corpus:
    """The documents at one sequence, by slot (slots follow vids: ascending, never reused)."""

    seq: int
    build: int  # the keyword index's build (a rebuild may index other texts under the same vids)
    vids: np.ndarray  # (S,) int64 ascending
    lengths: np.ndarray  # (S,) float64, tokens in each document
    live: np.ndarray  # (S,) bool; False: removed since the slot was made
    n: int  # live documents
    tokens: int  # tokens in the live documents
    generation: int  # moves on whenever documents are removed

    @property
    def norm(self) -> np.ndarray:
        """(S,) `k1 * (1 - b + b * |d| / avgdl)`, BM25's length normalization."""
        avgdl = self.tokens / self.n if self.n else 1.0
        return K1 * (1 - B + B * self.lengths / avgdl)


@dataclass(frozen=True)
class _Postings:
    slots: np.ndarray  # (m,) int32 ascending: the documents holding the term
    tf: np.ndarray  # (m,) float64, occurrences in each
    generation: int  # the corpus generation whose removals `slots` already left out

    @property
    def nbytes(self) -> int:
        return int(self.slots.nbytes + self.tf.nbytes)


class Bm25Index:
    """BM25 over one collection's keyword index; `search` runs inside a read transaction."""

    def __init__(self, cache_bytes: int) -> None:
        self._cache_bytes = cache_bytes
        self._corpus: _Corpus | None = None
        self._norm: np.ndarray | None = None  # _corpus.norm, computed once per corpus
        self._postings: OrderedDict[str, _Postings] = OrderedDict()  # LRU, oldest first
        self._bytes = 0
        self._df: dict[str, int] = {}  # document counts of terms without cached postings
        self._lock = threading.Lock()

    def search(
        self, src: KeywordSource, terms: list[str], limit: int, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """`(vids, scores)` of the best `limit` documents holding any of `terms` (and in
        `allowed`, when given), best first, ties by vid."""
        with self._lock:
            corpus, norm = self._sync(src)
            dfs = [self._doc_frequency(src, corpus, t) for t in terms]
            kept = [i for i, df in enumerate(dfs) if 0 < 2 * df < corpus.n]
            if len(terms) < 2 or not kept:
                kept = [i for i, df in enumerate(dfs) if df > 0]
            postings = [(dfs[i], self._postings_of(src, corpus, terms[i])) for i in kept]
        scores = np.zeros(len(corpus.vids))  # (S,)
        for df, p in postings:
            idf = math.log((corpus.n - df + 0.5) / (df + 0.5))
            idf = idf if idf > 0.0 else IDF_FLOOR
            scores[p.slots] += idf * ((p.tf * (K1 + 1.0)) / (p.tf + norm[p.slots]))
        found = np.flatnonzero(scores > 0)  # every contribution is > 0 (a bool mask: 5x faster)
        if allowed is not None:
            found = found[_members(corpus.vids[found], allowed)]
        return _best(corpus.vids, found, scores[found], limit)

    @property
    def cached_bytes(self) -> int:
        return self._bytes

    # -- keeping in step with the store ---------------------------------------------------------

    def _sync(self, src: KeywordSource) -> tuple[_Corpus, np.ndarray]:
        seq, build = src.keyword_state()
        corpus = self._corpus
        if corpus is None or corpus.seq != seq or corpus.build != build:
            if corpus is None or corpus.build != build or not self._catch_up(src, corpus, seq):
                self._start_over(src, seq, build)
            assert self._corpus is not None
            self._norm = self._corpus.norm
        assert self._corpus is not None and self._norm is not None
        return self._corpus, self._norm

    def _start_over(self, src: KeywordSource, seq: int, build: int) -> None:
        vids, lengths = src.keyword_lengths(after=-1)
        live = np.ones(len(vids), bool)
        self._corpus = _Corpus(seq, build, vids, lengths, live, len(vids), int(lengths.sum()), 0)
        self._postings.clear()
        self._bytes = 0
        self._df.clear()

    def _catch_up(self, src: KeywordSource, corpus: _Corpus, seq: int) -> bool:
        """Move to `seq` from `corpus`; False when starting over is needed (or cheaper)."""
        if seq < corpus.seq or src.pruned_through() > corpus.seq:
            return False
        new_vids, new_lengths = src.keyword_lengths(after=corpus.seq)
        if (self._postings or self._df) and len(new_vids) > _MAX_CATCH_UP:
            return False
        removed = src.tombstones_after(corpus.seq)
        at = np.minimum(np.searchsorted(corpus.vids, removed), max(len(corpus.vids) - 1, 0))
        dead = at[(corpus.vids[at] == removed) & corpus.live[at]] if len(removed) else at[:0]
        live = np.concatenate([corpus.live, np.ones(len(new_vids), bool)])
        live[dead] = False
        if 2 * int(live.sum()) < len(live):
            return False  # mostly dead slots: compact them by starting over
        self._corpus = _Corpus(
            seq,
            corpus.build,
            np.concatenate([corpus.vids, new_vids]),
            np.concatenate([corpus.lengths, new_lengths]),
            live,
            corpus.n - len(dead) + len(new_vids),
            corpus.tokens - int(corpus.lengths[dead].sum()) + int(new_lengths.sum()),
            corpus.generation + (1 if len(dead) else 0),
        )
        if len(dead):
            self._df.clear()  # which terms the removed documents held is gone with their texts
        if (self._postings or self._df) and len(new_vids):
            self._count_new_terms(src, corpus.seq)
        return True

    def _count_new_terms(self, src: KeywordSource, after: int) -> None:
        """Add the documents written after vid `after` to the cached postings and document
        counts of their terms."""
        assert self._corpus is not None
        extra: dict[str, tuple[list[int], list[int]]] = {}
        for vid, text in src.texts_after(after):
            slot = int(np.searchsorted(self._corpus.vids, vid))
            for term, tf in Counter(index_terms(text)).items():
                if term in self._df:
                    self._df[term] += 1
                if term in self._postings:
                    slots, tfs = extra.setdefault(term, ([], []))
                    slots.append(slot)
                    tfs.append(tf)
        for term, (slots, tfs) in extra.items():
            old = self._postings.get(term)
            if old is None:
                continue  # evicted meanwhile; read afresh when next asked for
            self._store(
                term,
                _Postings(
                    np.concatenate([old.slots, np.asarray(slots, np.int32)]),
                    np.concatenate([old.tf, np.asarray(tfs, np.float64)]),
                    old.generation,
                ),
            )

    # -- terms ----------------------------------------------------------------------------------

    def _doc_frequency(self, src: KeywordSource, corpus: _Corpus, term: str) -> int:
        if term in self._postings:
            return len(self._postings_of(src, corpus, term).slots)
        if term not in self._df:
            self._df[term] = src.keyword_doc_frequency(term)
        return self._df[term]

    def _postings_of(self, src: KeywordSource, corpus: _Corpus, term: str) -> _Postings:
        p = self._postings.get(term)
        if p is not None and p.generation == corpus.generation:
            self._postings.move_to_end(term)
            return p
        if p is None:
            vids, tf = src.keyword_postings(term)
            slots = np.searchsorted(corpus.vids, vids).astype(np.int32)
            p = _Postings(slots, tf, corpus.generation)
        else:  # documents were removed since: leave them out now
            keep = corpus.live[p.slots]
            p = _Postings(p.slots[keep], p.tf[keep], corpus.generation)
        self._store(term, p)
        return p

    def _store(self, term: str, p: _Postings) -> None:
        old = self._postings.pop(term, None)
        self._bytes -= old.nbytes if old is not None else 0
        self._postings[term] = p
        self._bytes += p.nbytes
        while self._bytes > self._cache_bytes and len(self._postings) > 1:
            _, evicted = self._postings.popitem(last=False)
            self._bytes -= evicted.nbytes


def _members(values: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """(len(values),) bool: which of `values` are in `allowed`."""
    if len(allowed) == 0:
        return np.zeros(len(values), bool)
    ordered = allowed if np.all(allowed[1:] > allowed[:-1]) else np.unique(allowed)
    at = np.minimum(np.searchsorted(ordered, values), len(ordered) - 1)
    return ordered[at] == values


def _best(
    vids: np.ndarray, found: np.ndarray, scores: np.ndarray, limit: int
) -> tuple[np.ndarray, np.ndarray]:
    """The `limit` best of `found` slots by score, ties by vid (slots follow vids)."""
    if len(found) > limit:
        kth = np.partition(scores, len(scores) - limit)[len(scores) - limit]
        keep = scores >= kth  # every slot tied with the k-th, to break ties by vid
        found, scores = found[keep], scores[keep]
    order = np.lexsort((found, -scores))[:limit]
    return vids[found[order]], scores[order]

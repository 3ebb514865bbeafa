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
tombstones it would need were pruned, when the keyword index was rebuilt, or when half its slots
are dead; when more than `_MAX_CATCH_UP` documents are new, it forgets the cached terms instead of
tokenizing them (reading them again costs less). A catch-up that fails half-way leaves nothing:
the next search starts over.

Memory: the postings LRU is bounded in bytes (a query's own terms are kept while it runs, so one
longer posting list than the bound stays until the next is read); document counts of terms
without postings (terms in half the documents) at most `_MAX_COUNTS`.
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
_MAX_CATCH_UP = 1_000  # new documents tokenized to extend cached terms; past it, forget them
_MAX_COUNTS = 100_000  # document counts kept for terms without cached postings


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
    """BM25 over one collection's keyword index. `sync` and `search` run inside the caller's read
    transaction; the lock guards this object's state, never a read from the store, so one slow
    query does not hold up the others."""

    def __init__(self, cache_bytes: int) -> None:
        self._cache_bytes = cache_bytes
        self._corpus: _Corpus | None = None
        self._norm: np.ndarray | None = None  # _corpus.norm, computed once per corpus
        self._postings: OrderedDict[str, _Postings] = OrderedDict()  # LRU, oldest first
        self._bytes = 0
        self._df: dict[str, int] = {}  # document counts (> 0) of terms without cached postings
        self._lock = threading.Lock()

    def sync(self, src: KeywordSource) -> None:
        """Catch up with the store (a search does it too; the caller may first, without the
        query's deadline: the cost is the writes', like the vector index's catch-up)."""
        with self._lock:
            self._sync(src)

    def search(
        self, src: KeywordSource, terms: list[str], limit: int, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """`(vids, scores)` of the best `limit` documents holding any of `terms` (and in
        `allowed`, when given), best first, ties by vid."""
        with self._lock:
            corpus, norm = self._sync(src)
            known = {t: self._known_frequency(corpus, t) for t in terms}
        read = {t: src.keyword_doc_frequency(t) for t in terms if known[t] is None}
        dfs = [known[t] if known[t] is not None else read[t] for t in terms]
        kept = [i for i, df in enumerate(dfs) if 0 < 2 * df < corpus.n]
        if len(terms) < 2 or not kept:
            kept = [i for i, df in enumerate(dfs) if df > 0]
        with self._lock:
            self._remember_frequencies(corpus, read)
            cached = {terms[i]: self._cached(corpus, terms[i]) for i in kept}
        loaded: dict[str, _Postings] = {}
        for term in (t for t, p in cached.items() if p is None):
            vids, tf = src.keyword_postings(term)
            loaded[term] = _Postings(_slots(corpus, vids), tf, corpus.generation)
        if loaded:
            with self._lock:
                if self._corpus is corpus:  # else the cache moved on meanwhile: use them once
                    for term, p in loaded.items():
                        self._store(term, p)
        scores = np.zeros(len(corpus.vids))  # (S,)
        for i in kept:
            df, p = dfs[i], cached[terms[i]] or loaded[terms[i]]
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
            try:
                if corpus is None or corpus.build != build or not self._catch_up(src, corpus, seq):
                    self._start_over(src, seq, build)
                assert self._corpus is not None
                self._norm = self._corpus.norm
            except BaseException:  # a half-made state is never used: the next search starts over
                self._corpus, self._norm = None, None
                self._forget_terms()
                raise
        assert self._corpus is not None and self._norm is not None
        return self._corpus, self._norm

    def _start_over(self, src: KeywordSource, seq: int, build: int) -> None:
        self._corpus = None
        self._forget_terms()
        vids, lengths = src.keyword_lengths(after=-1)
        live = np.ones(len(vids), bool)
        self._corpus = _Corpus(seq, build, vids, lengths, live, len(vids), int(lengths.sum()), 0)

    def _catch_up(self, src: KeywordSource, corpus: _Corpus, seq: int) -> bool:
        """Move to `seq` from `corpus`; False when starting over is needed."""
        if seq < corpus.seq or src.pruned_through() > corpus.seq:
            return False
        new_vids, new_lengths = src.keyword_lengths(after=corpus.seq)
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
        if len(new_vids) > _MAX_CATCH_UP:
            self._forget_terms()  # reading them again costs less than tokenizing the new texts
        elif (self._postings or self._df) and len(new_vids):
            self._count_new_terms(src, corpus.seq)
        if len(dead):
            self._df.clear()  # which terms the removed documents held is gone with their texts
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

    def _forget_terms(self) -> None:
        self._postings.clear()
        self._bytes = 0
        self._df.clear()

    # -- terms (the caller holds the lock) ------------------------------------------------------

    def _known_frequency(self, corpus: _Corpus, term: str) -> int | None:
        """The term's document count if cached (its postings, or a count), else None."""
        p = self._cached(corpus, term)
        return len(p.slots) if p is not None else self._df.get(term)

    def _remember_frequencies(self, corpus: _Corpus, read: dict[str, int]) -> None:
        if self._corpus is not corpus:
            return
        for term, df in read.items():
            if df > 0:  # absent terms are not kept: a query of made-up words costs no memory
                if len(self._df) >= _MAX_COUNTS:
                    self._df.clear()
                self._df[term] = df

    def _cached(self, corpus: _Corpus, term: str) -> _Postings | None:
        """The term's cached postings, without the documents removed since they were read."""
        p = self._postings.get(term)
        if p is None:
            return None
        if p.generation != corpus.generation:
            keep = corpus.live[p.slots]
            p = _Postings(p.slots[keep], p.tf[keep], corpus.generation)
            self._store(term, p)
        else:
            self._postings.move_to_end(term)
        return p

    def _store(self, term: str, p: _Postings) -> None:
        old = self._postings.pop(term, None)
        self._bytes -= old.nbytes if old is not None else 0
        self._postings[term] = p
        self._bytes += p.nbytes
        while self._bytes > self._cache_bytes and len(self._postings) > 1:
            _, evicted = self._postings.popitem(last=False)
            self._bytes -= evicted.nbytes


def _slots(corpus: _Corpus, vids: np.ndarray) -> np.ndarray:
    return np.searchsorted(corpus.vids, vids).astype(np.int32)


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

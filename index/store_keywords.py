"""The store's keyword index (index/fulltext.py) and keyword search (index/bm25.py): building the
index, counting it, and the reads BM25 needs, each inside the caller's read transaction. Mixed into
`Store`."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager

import numpy as np

from semsearch.index import fulltext
from semsearch.index.bm25 import Bm25Index

log = logging.getLogger(__name__)


class KeywordReads:
    """Needs the store's connection, query deadline and tombstones."""

    _bm25: Bm25Index

    def _con(self) -> sqlite3.Connection:
        raise NotImplementedError

    def _deadline(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def keywords_ready(self) -> bool:
        return fulltext.ready(self._con())

    def keyword_count(self) -> int | None:
        return fulltext.count(self._con())

    def build_keywords(self) -> int:
        """(Re)build the keyword index from the stored texts in one transaction; the documents
        indexed, or -1 when it was ready (another process built it meanwhile)."""
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            n = -1 if fulltext.ready(con) else fulltext.rebuild(con)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return n

    def keyword_search(
        self, terms: list[str], limit: int, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """`(vids, bm25)` of the best `limit` documents holding any of `terms` (those in
        `allowed`, when given), best first, ties by vid; under the query deadline. Call it
        inside a read transaction (`Store.snapshot`)."""
        self._bm25.sync(self)  # catching up costs what the writes since did, not this query
        with self._deadline():
            return self._bm25.search(self, terms, limit, allowed)

    # -- what index/bm25.py reads (its KeywordSource) ------------------------------------------

    def keyword_state(self) -> tuple[int, int]:
        return fulltext.indexed_state(self._con())

    def keyword_lengths(self, after: int) -> tuple[np.ndarray, np.ndarray]:
        return fulltext.doc_lengths(self._con(), after)

    def keyword_doc_frequency(self, term: str) -> int:
        return fulltext.doc_frequency(self._con(), term)

    def keyword_postings(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        return fulltext.postings(self._con(), term)

    def texts_after(self, vid: int) -> Iterator[tuple[int, str]]:
        yield from self._con().execute(
            "SELECT vid, text FROM texts WHERE vid > ? ORDER BY vid", (vid,)
        )

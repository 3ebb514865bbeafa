"""BM25 as the keyword index computes it, from rank-bm25 (the reference) on the same terms.

rank-bm25's `BM25Okapi(k1=1.2, b=0.75, epsilon=0)` over `keywords.index_terms` of the live texts,
with its IDF floor set to FTS5's (`bm25()` clamps an IDF <= 0 to 1e-6; rank-bm25 with epsilon 0
puts 0 there), asked for the query's distinct terms less those in at least half the documents when
another of its terms is in some but fewer than half (index/fulltext.py leaves those out of the
match). Independent of index/fulltext.py's code: the rule is restated here.
"""

from __future__ import annotations

import numpy as np
from rank_bm25 import BM25Okapi

from semsearch.index.keywords import index_terms, query_terms


def kept_terms(corpus: list[list[str]], query: str) -> list[str]:
    terms = query_terms(query)
    df = {t: sum(t in set(doc) for doc in corpus) for t in terms}
    informative = [t for t in terms if 0 < 2 * df[t] < len(corpus)]
    return informative if len(terms) > 1 and informative else terms


def bm25_scores(texts: list[str], query: str, full: bool = False) -> np.ndarray:
    """Each text's score for `query` (`full`: every term of the query, none left out)."""
    corpus = [index_terms(t) for t in texts]
    ref = BM25Okapi(corpus, k1=1.2, b=0.75, epsilon=0.0)
    ref.idf = {term: (idf if idf > 0 else 1e-6) for term, idf in ref.idf.items()}
    return ref.get_scores(query_terms(query) if full else kept_terms(corpus, query))

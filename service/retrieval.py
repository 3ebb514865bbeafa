"""Retrieval, shared by `/search` and `/rag`: embed the query, then a (filtered) collection search.

The query goes through the embedding batcher like any other input (and leaves it when its client
disconnects); the search runs on the search pool, never the event loop, and so does whatever the
route makes of the hits (`/search` serializes up to k whole documents there). A keyword search
embeds nothing; its terms are found and its SQL (FTS5's BM25) run on the search pool too, each
query under SEMSEARCH_QUERY_TIMEOUT_S like a filter's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request

from semsearch.index import CollectionBackend, Fusion, Hit
from semsearch.service.engine import EmbeddingEngine, check_text_lengths
from semsearch.service.errors import ValidationFailed
from semsearch.service.streaming import until_disconnected
from semsearch.service.workpool import WorkPool

T = TypeVar("T")


@dataclass(frozen=True)
class Retriever:
    embedding: EmbeddingEngine
    collection: CollectionBackend
    searches: WorkPool

    async def retrieve(
        self,
        request: Request,
        query: str,
        k: int,
        filter: dict[str, Any] | None,
        score_threshold: float | None,
        then: Callable[[list[Hit]], T],
        mode: str = "dense",
        fusion: Fusion | None = None,
    ) -> T:
        """`then(hits)`: the best `k` documents for `query` that match `filter`, best first, by
        `mode` (dense, keyword or hybrid: `Collection.search`)."""
        settings = self.embedding.settings
        check_k(k, settings.max_search_k)
        if fusion is not None and fusion.candidates is not None:
            check_k(fusion.candidates, settings.max_search_k, "candidates")
        vector = None
        if mode == "keyword":
            check_text_lengths(
                [query], settings.max_input_chars, "SEMSEARCH_MAX_INPUT_CHARS", "query"
            )
        else:
            embedded = self.embedding.embed([query], normalize=True, truncate=True)
            vector = (await until_disconnected(request, embedded)).vectors[0]

        def search() -> T:
            hits = self.collection.search(
                vector, k, filter, score_threshold, text=query, mode=mode, fusion=fusion
            )
            return then(hits)

        return await self.searches.run(search)


def check_k(k: int, limit: int, name: str = "k") -> None:
    """Hits per search are bounded: k x the largest document bounds the size of an answer (and
    a hybrid search's candidates, the work of each side)."""
    if k > limit:
        raise ValidationFailed(
            f"{name}={k} is more than the maximum of {limit} hits per search "
            "(SEMSEARCH_MAX_SEARCH_K)",
            param=name,
        )

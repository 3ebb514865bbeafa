"""Retrieval, shared by `/search` and `/rag`: embed the query, then a (filtered) collection search.

The query goes through the embedding batcher like any other input (and leaves it when its client
disconnects); the search runs on the search pool, never the event loop, and so does whatever the
route makes of the hits (`/search` serializes up to k whole documents there).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request

from semsearch.index import Collection, Hit
from semsearch.service.engine import EmbeddingEngine
from semsearch.service.errors import ValidationFailed
from semsearch.service.streaming import until_disconnected
from semsearch.service.workpool import WorkPool

T = TypeVar("T")


@dataclass(frozen=True)
class Retriever:
    embedding: EmbeddingEngine
    collection: Collection
    searches: WorkPool

    async def retrieve(
        self,
        request: Request,
        query: str,
        k: int,
        filter: dict[str, Any] | None,
        score_threshold: float | None,
        then: Callable[[list[Hit]], T],
    ) -> T:
        """`then(hits)`: the best `k` documents for `query` that match `filter`, best first."""
        check_k(k, self.embedding.settings.max_search_k)
        embedded = self.embedding.embed([query], normalize=True, truncate=True)
        vector = (await until_disconnected(request, embedded)).vectors[0]

        def search() -> T:
            return then(self.collection.search(vector, k, filter, score_threshold))

        return await self.searches.run(search)


def check_k(k: int, limit: int) -> None:
    """Hits per search are bounded: k x the largest document bounds the size of an answer."""
    if k > limit:
        raise ValidationFailed(
            f"k={k} is more than the maximum of {limit} hits per search (SEMSEARCH_MAX_SEARCH_K)",
            param="k",
        )

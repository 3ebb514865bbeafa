"""`/search`: embed the query through the shared batcher, then a (filtered) collection search."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter

from service.deps import CollectionDep, EmbeddingDep
from service.schemas import Hit, SearchRequest, SearchResponse

router = APIRouter(tags=["search"])


@router.post("/search", response_model=SearchResponse)
async def search(
    body: SearchRequest, engine: EmbeddingDep, collection: CollectionDep
) -> SearchResponse:
    started = time.perf_counter()
    query = (await engine.embed([body.query], normalize=True, truncate=True)).vectors[0]
    hits = await asyncio.to_thread(
        collection.search, query, body.k, body.filter, body.score_threshold
    )
    return SearchResponse(
        hits=[Hit(id=h.id, score=h.score, text=h.text, metadata=h.metadata) for h in hits],
        took_ms=(time.perf_counter() - started) * 1000,
    )

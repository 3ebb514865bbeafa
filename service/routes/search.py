"""`/search`: embed the query through the shared batcher, then a (filtered) collection search."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response

from semsearch.index import Collection
from semsearch.service.deps import CollectionDep, EmbeddingDep, SearchPoolDep
from semsearch.service.errors import ValidationFailed
from semsearch.service.schemas import NATIVE_ERRORS, SearchRequest, SearchResponse
from semsearch.service.streaming import until_disconnected

router = APIRouter(tags=["search"], responses=NATIVE_ERRORS)


@router.post("/search", response_model=SearchResponse)
async def search(
    body: SearchRequest,
    request: Request,
    engine: EmbeddingDep,
    collection: CollectionDep,
    searches: SearchPoolDep,
) -> Response:
    started = time.perf_counter()
    check_k(body.k, engine.settings.max_search_k)
    embedded = engine.embed([body.query], normalize=True, truncate=True)
    query = (await until_disconnected(request, embedded)).vectors[0]
    # The search and the answer's JSON (up to k x SEMSEARCH_MAX_DOCUMENT_CHARS) off the loop.
    payload = await searches.run(_search_json, collection, query, body, started)
    return Response(payload, media_type="application/json")


def _search_json(
    collection: Collection, query: np.ndarray, body: SearchRequest, started: float
) -> bytes:
    hits = collection.search(query, body.k, body.filter, body.score_threshold)
    answer: dict[str, Any] = {
        "hits": [h.to_dict() for h in hits],
        "took_ms": (time.perf_counter() - started) * 1000,
    }
    return json.dumps(answer, ensure_ascii=False, allow_nan=False).encode()


def check_k(k: int, limit: int) -> None:
    """Hits per search are bounded: k x the largest document bounds the size of an answer."""
    if k > limit:
        raise ValidationFailed(
            f"k={k} is more than the maximum of {limit} hits per search (SEMSEARCH_MAX_SEARCH_K)",
            param="k",
        )

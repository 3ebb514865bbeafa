"""`/search`: embed the query through the shared batcher, then a (filtered) collection search."""

from __future__ import annotations

import json
import time

from fastapi import APIRouter, Request, Response

from semsearch.index import Hit
from semsearch.service.deps import RetrieverDep
from semsearch.service.schemas import NATIVE_ERRORS, SearchRequest, SearchResponse

router = APIRouter(tags=["search"], responses=NATIVE_ERRORS)


@router.post("/search", response_model=SearchResponse)
async def search(body: SearchRequest, request: Request, retriever: RetrieverDep) -> Response:
    started = time.perf_counter()

    # The answer's JSON (up to k x SEMSEARCH_MAX_DOCUMENT_CHARS) is built off the loop too.
    def answer(hits: list[Hit]) -> bytes:
        took_ms = (time.perf_counter() - started) * 1000
        payload = {"hits": [h.to_dict() for h in hits], "took_ms": took_ms}
        return json.dumps(payload, ensure_ascii=False, allow_nan=False).encode()

    payload = await retriever.retrieve(
        request, body.query, body.k, body.filter, body.score_threshold, then=answer
    )
    return Response(payload, media_type="application/json")

"""`/search`: embed the query through the shared batcher, then a (filtered) collection search;
or a keyword (BM25) search, or both fused by reciprocal rank (`mode`)."""

from __future__ import annotations

import json
import time

from fastapi import APIRouter, Request, Response

from semsearch.index import Fusion, Hit
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

    fusion = None
    if body.mode == "hybrid":
        weights = body.weights.model_dump() if body.weights is not None else {}
        fusion = Fusion(rrf_k=body.rrf_k, weights=weights, candidates=body.candidates)
    payload = await retriever.retrieve(
        request,
        body.query,
        body.k,
        body.filter,
        body.score_threshold,
        then=answer,
        mode=body.mode,
        fusion=fusion,
    )
    return Response(payload, media_type="application/json")

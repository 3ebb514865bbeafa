"""`/rag`: retrieval and generation in one call (embed the query, search, answer from the hits)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from service.deps import CollectionDep, EmbeddingDep, GenerationDep, SettingsDep
from service.generation import GenerationEngine, Sampling, Slot
from service.offload import run_sized
from service.rag import rag_messages
from service.routes.generation import native_events
from service.schemas import NATIVE_ERRORS, GenerateUsage, RagRequest, RagResponse, Source
from service.streaming import sse_event, sse_response, until_disconnected

router = APIRouter(tags=["generation"], responses=NATIVE_ERRORS)

_DEFAULT_MAX_TOKENS = 128


@router.post(
    "/rag", response_model=RagResponse, responses={200: {"content": {"text/event-stream": {}}}}
)
async def rag(
    body: RagRequest,
    request: Request,
    settings: SettingsDep,
    embedding: EmbeddingDep,
    collection: CollectionDep,
    generation: GenerationDep,
) -> RagResponse | StreamingResponse:
    sampling = body.sampling(generation.default_max_new_tokens(_DEFAULT_MAX_TOKENS))
    generation.check_sampling(sampling)  # before the work of a search
    query = (await embedding.embed([body.query], normalize=True, truncate=True)).vectors[0]
    hits = await asyncio.to_thread(
        collection.search, query, body.k, body.filter, body.score_threshold
    )
    # Retrieved texts go in as plain text (never control tokens) and clipped, so the prompt's
    # size is bounded by k x SEMSEARCH_RAG_MAX_SOURCE_CHARS plus the query.
    messages = rag_messages(body.query, hits, settings.rag_max_source_chars)
    prompt_ids = await run_sized(
        sum(len(m["content"]) for m in messages), generation.prompt_ids, None, messages
    )
    sources = [Source(id=h.id, score=h.score, text=h.text) for h in hits]
    if body.stream:
        slot = generation.reserve()
        return sse_response(
            _events(generation, prompt_ids, sampling, sources, slot), request, slot.release_unused
        )
    done = await until_disconnected(request, generation.complete(prompt_ids, sampling))
    return RagResponse(
        answer=done.text,
        finish_reason=done.finish_reason,
        sources=sources,
        usage=GenerateUsage(
            prompt_tokens=done.usage["prompt_tokens"],
            completion_tokens=done.usage["completion_tokens"],
        ),
    )


async def _events(
    engine: GenerationEngine,
    prompt_ids: list[int],
    sampling: Sampling,
    sources: list[Source],
    slot: Slot,
) -> AsyncIterator[str]:
    """The sources first, then the events of `/generate`'s stream."""
    yield sse_event({"sources": [s.model_dump() for s in sources]})
    async for event in native_events(engine, prompt_ids, sampling, slot):
        yield event

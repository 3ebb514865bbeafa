"""`/rag`: retrieval and generation in one call (embed the query, search, answer from the hits)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from semsearch.service.deps import GenerationDep, RetrieverDep, SettingsDep
from semsearch.service.engine import check_text_lengths
from semsearch.service.generation import GenerationEngine, Sampling, Slot
from semsearch.service.rag import fit_prompt
from semsearch.service.routes.generation import native_events
from semsearch.service.schemas import (
    NATIVE_ERRORS,
    STREAMED,
    GenerateUsage,
    RagRequest,
    RagResponse,
    Source,
)
from semsearch.service.streaming import sse_event, sse_response, until_disconnected

router = APIRouter(tags=["generation"], responses=NATIVE_ERRORS)

_DEFAULT_MAX_TOKENS = 128


@router.post("/rag", response_model=RagResponse, responses=STREAMED)
async def rag(
    body: RagRequest,
    request: Request,
    settings: SettingsDep,
    retriever: RetrieverDep,
    generation: GenerationDep,
) -> RagResponse | StreamingResponse:
    sampling = body.sampling(generation.default_max_new_tokens(_DEFAULT_MAX_TOKENS))
    generation.check_sampling(sampling)  # before the work of a search
    check_text_lengths(
        [body.query], settings.max_prompt_chars, "SEMSEARCH_MAX_PROMPT_CHARS", "query"
    )
    hits = await retriever.retrieve(
        request, body.query, body.k, body.filter, body.score_threshold, then=list, mode=body.mode
    )
    # Retrieved texts go in as plain text (never control tokens), clipped, and only as many as
    # fit beside the answer in the model's context: the prompt is bounded by construction.
    room = generation.context_length - sampling.max_new_tokens
    prompt_ids, used = await asyncio.to_thread(
        fit_prompt,
        body.query,
        hits,
        settings.rag_max_source_chars,
        room,
        generation.chat_ids,
    )
    sources = [Source(id=h.id, score=h.score, text=h.text) for h in hits[:used]]
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
        usage=GenerateUsage.of(done.usage),
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

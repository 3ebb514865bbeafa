"""`/generate` (native), `/v1/completions` and `/v1/chat/completions` (OpenAI's shapes)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from semsearch.service.deps import GenerationDep
from semsearch.service.generation import GenerationEngine, Sampling, Slot
from semsearch.service.openai_schemas import ChatCompletionRequest, CompletionRequest
from semsearch.service.schemas import (
    NATIVE_ERRORS,
    OPENAI_ERRORS,
    GenerateRequest,
    GenerateResponse,
    GenerateUsage,
)
from semsearch.service.streaming import sse_event, sse_response, until_disconnected

router = APIRouter(tags=["generation"], responses=NATIVE_ERRORS)

_NATIVE_DEFAULT_MAX_TOKENS = 128
_COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions
_CHAT_DEFAULT_MAX_TOKENS = 512  # OpenAI's is "up to the context"; this keeps CPU replies bounded


@router.post(
    "/generate",
    response_model=GenerateResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def generate(
    body: GenerateRequest, request: Request, engine: GenerationDep
) -> GenerateResponse | StreamingResponse:
    messages = [m.model_dump() for m in body.messages] if body.messages is not None else None
    sampling = body.sampling(engine.default_max_new_tokens(_NATIVE_DEFAULT_MAX_TOKENS))
    prompt_ids = await engine.prepare(body.prompt, messages, sampling)
    if body.stream:
        slot = engine.reserve()  # 429 now, before the 200 goes out
        return sse_response(
            native_events(engine, prompt_ids, sampling, slot), request, slot.release_unused
        )
    done = await until_disconnected(request, engine.complete(prompt_ids, sampling))
    return GenerateResponse(
        text=done.text,
        finish_reason=done.finish_reason,
        usage=GenerateUsage(
            prompt_tokens=done.usage["prompt_tokens"],
            completion_tokens=done.usage["completion_tokens"],
        ),
    )


async def native_events(
    engine: GenerationEngine, prompt_ids: list[int], sampling: Sampling, slot: Slot
) -> AsyncIterator[str]:
    """`{"text": delta}` per token, then `{"text", "finish_reason", "usage"}` last (TGI-like)."""
    async for delta in engine.stream(prompt_ids, sampling, slot):
        event: dict[str, Any] = {"text": delta.text}
        if delta.finish_reason is not None:
            usage = delta.usage or {}
            event["finish_reason"] = delta.finish_reason
            event["usage"] = {
                "prompt_tokens": usage.get("prompt_tokens", len(prompt_ids)),
                "completion_tokens": usage.get("completion_tokens", 0),
            }
        yield sse_event(event)


# --- OpenAI ------------------------------------------------------------------------------------


def _openai_usage(usage: dict[str, int]) -> dict[str, int]:
    prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _response_meta(id_prefix: str, kind: str, model: str) -> dict[str, Any]:
    return {
        "id": f"{id_prefix}-{uuid.uuid4().hex}",
        "object": kind,
        "created": int(time.time()),
        "model": model,
    }


@router.post("/v1/completions", responses=OPENAI_ERRORS)
async def completions(body: CompletionRequest, request: Request, engine: GenerationDep) -> Any:
    sampling = body.sampling(engine.default_max_new_tokens(_COMPLETIONS_DEFAULT_MAX_TOKENS))
    prompt_ids = await engine.prepare(body.prompt, None, sampling)
    meta = _response_meta("cmpl", "text_completion", body.model or engine.model_id)
    if body.stream:
        slot = engine.reserve()
        events = _openai_events(
            engine, prompt_ids, sampling, slot, meta, body.include_usage, chat=False
        )
        return sse_response(events, request, slot.release_unused)
    done = await until_disconnected(request, engine.complete(prompt_ids, sampling))
    choice = {"index": 0, "text": done.text, "logprobs": None, "finish_reason": done.finish_reason}
    return {**meta, "choices": [choice], "usage": _openai_usage(done.usage)}


@router.post("/v1/chat/completions", responses=OPENAI_ERRORS)
async def chat_completions(
    body: ChatCompletionRequest, request: Request, engine: GenerationDep
) -> Any:
    sampling = body.sampling(engine.default_max_new_tokens(_CHAT_DEFAULT_MAX_TOKENS))
    messages = [m.model_dump() for m in body.messages]
    prompt_ids = await engine.prepare(None, messages, sampling)
    meta = _response_meta("chatcmpl", "chat.completion", body.model or engine.model_id)
    if body.stream:
        slot = engine.reserve()
        chunk_meta = {**meta, "object": "chat.completion.chunk"}
        events = _openai_events(
            engine, prompt_ids, sampling, slot, chunk_meta, body.include_usage, chat=True
        )
        return sse_response(events, request, slot.release_unused)
    done = await until_disconnected(request, engine.complete(prompt_ids, sampling))
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": done.text},
        "logprobs": None,
        "finish_reason": done.finish_reason,
    }
    return {**meta, "choices": [choice], "usage": _openai_usage(done.usage)}


async def _openai_events(
    engine: GenerationEngine,
    prompt_ids: list[int],
    sampling: Sampling,
    slot: Slot,
    meta: dict[str, Any],
    include_usage: bool,
    *,
    chat: bool,
) -> AsyncIterator[str]:
    """OpenAI's stream: one chunk per delta, `finish_reason` on the last, optional usage, [DONE]."""

    def chunk(text: str | None, finish_reason: str | None) -> dict[str, Any]:
        if chat:
            delta = {} if text is None else {"content": text}
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        else:
            choice = {
                "index": 0,
                "text": text or "",
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        return {**meta, "choices": [choice]}

    if chat:
        first = chunk(None, None)
        first["choices"][0]["delta"] = {"role": "assistant", "content": ""}
        yield sse_event(first)
    usage: dict[str, int] = {}
    async for delta in engine.stream(prompt_ids, sampling, slot):
        if delta.text:
            yield sse_event(chunk(delta.text, None))
        if delta.finish_reason is not None:
            usage = delta.usage or {}
            yield sse_event(chunk(None, delta.finish_reason))
    if include_usage:
        yield sse_event({**meta, "choices": [], "usage": _openai_usage(usage)})
    yield sse_event("[DONE]")

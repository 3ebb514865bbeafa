"""`/generate` (native), `/v1/completions` and `/v1/chat/completions` (OpenAI's shapes)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, replace

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from semsearch.service.deps import GenerationDep
from semsearch.service.generation import GenerationEngine, Sampling, Slot
from semsearch.service.openai_schemas import (
    AssistantMessage,
    ChatCompletionChoice,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    CompletionUsage,
)
from semsearch.service.openai_unsupported import GENERATION_RULES, refuse_unsupported
from semsearch.service.schemas import (
    NATIVE_ERRORS,
    OPENAI_ERRORS,
    STREAMED,
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
    responses=STREAMED,
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
        usage=GenerateUsage.of(done.usage),
    )


async def native_events(
    engine: GenerationEngine, prompt_ids: list[int], sampling: Sampling, slot: Slot
) -> AsyncIterator[str]:
    """`{"text": delta}` per token, then `{"text", "finish_reason", "usage"}` last (TGI-like)."""
    async for delta in engine.stream(prompt_ids, sampling, slot):
        event: dict[str, object] = {"text": delta.text}
        if delta.finish_reason is not None:
            event["finish_reason"] = delta.finish_reason
            event["usage"] = GenerateUsage.of(delta.usage or {}, len(prompt_ids)).model_dump()
        yield sse_event(event)


# --- OpenAI ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Meta:
    """What every object of one OpenAI answer repeats (each streamed chunk included)."""

    id: str
    object: str
    created: int
    model: str

    @classmethod
    def new(cls, id_prefix: str, kind: str, model: str) -> _Meta:
        return cls(f"{id_prefix}-{uuid.uuid4().hex}", kind, int(time.time()), model)


@router.post(
    "/v1/completions",
    response_model=CompletionResponse,
    responses={**OPENAI_ERRORS, **STREAMED},
)
async def completions(
    body: CompletionRequest, request: Request, engine: GenerationDep
) -> CompletionResponse | StreamingResponse:
    refuse_unsupported(body.model_extra, GENERATION_RULES)
    sampling = body.sampling(engine.default_max_new_tokens(_COMPLETIONS_DEFAULT_MAX_TOKENS))
    prompt_ids = await engine.prepare(body.prompt, None, sampling)
    meta = _Meta.new("cmpl", "text_completion", engine.model_id)
    if body.stream:
        slot = engine.reserve()
        events = _openai_events(
            engine, prompt_ids, sampling, slot, meta, body.include_usage, chat=False
        )
        return sse_response(events, request, slot.release_unused)
    done = await until_disconnected(request, engine.complete(prompt_ids, sampling))
    return CompletionResponse(
        id=meta.id,
        created=meta.created,
        model=meta.model,
        choices=[CompletionChoice(text=done.text, finish_reason=done.finish_reason)],
        usage=CompletionUsage.of(done.usage),
    )


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletionResponse,
    responses={**OPENAI_ERRORS, **STREAMED},
)
async def chat_completions(
    body: ChatCompletionRequest, request: Request, engine: GenerationDep
) -> ChatCompletionResponse | StreamingResponse:
    refuse_unsupported(body.model_extra, GENERATION_RULES)
    sampling = body.sampling(engine.default_max_new_tokens(_CHAT_DEFAULT_MAX_TOKENS))
    messages = [m.model_dump() for m in body.messages]
    prompt_ids = await engine.prepare(None, messages, sampling)
    meta = _Meta.new("chatcmpl", "chat.completion", engine.model_id)
    if body.stream:
        slot = engine.reserve()
        chunks = replace(meta, object="chat.completion.chunk")
        events = _openai_events(
            engine, prompt_ids, sampling, slot, chunks, body.include_usage, chat=True
        )
        return sse_response(events, request, slot.release_unused)
    done = await until_disconnected(request, engine.complete(prompt_ids, sampling))
    return ChatCompletionResponse(
        id=meta.id,
        created=meta.created,
        model=meta.model,
        choices=[
            ChatCompletionChoice(
                message=AssistantMessage(content=done.text), finish_reason=done.finish_reason
            )
        ],
        usage=CompletionUsage.of(done.usage),
    )


async def _openai_events(
    engine: GenerationEngine,
    prompt_ids: list[int],
    sampling: Sampling,
    slot: Slot,
    meta: _Meta,
    include_usage: bool,
    *,
    chat: bool,
) -> AsyncIterator[str]:
    """OpenAI's stream: one chunk per delta, `finish_reason` on the last, optional usage, [DONE]."""
    head = asdict(meta)

    def chunk(piece: str | dict[str, str], finish_reason: str | None = None) -> str:
        choice = {"index": 0, "delta" if chat else "text": piece}
        return sse_event(
            {**head, "choices": [{**choice, "logprobs": None, "finish_reason": finish_reason}]}
        )

    if chat:
        yield chunk({"role": "assistant", "content": ""})
    usage: dict[str, int] = {}
    async for delta in engine.stream(prompt_ids, sampling, slot):
        if delta.text:
            yield chunk({"content": delta.text} if chat else delta.text)
        if delta.finish_reason is not None:
            usage = delta.usage or {}
            yield chunk({} if chat else "", delta.finish_reason)
    if include_usage:
        yield sse_event({**head, "choices": [], "usage": CompletionUsage.of(usage).model_dump()})
    yield sse_event("[DONE]")

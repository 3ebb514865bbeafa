"""Request and response bodies of the OpenAI-compatible `/v1/*` routes (OpenAI's field names).

Unknown fields (`user`, `n`, `logprobs`...) are ignored, as OpenAI-compatible servers commonly do,
so existing clients work unchanged.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from semsearch.service.sampling_schema import OpenAISampling
from semsearch.service.schemas import Texts
from semsearch.service.settings import MAX_LIST_ITEMS


class OpenAIEmbeddingRequest(BaseModel):
    """`/v1/embeddings`."""

    input: str | Texts
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class OpenAIEmbedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class OpenAIUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class OpenAIEmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIEmbedding]
    model: str
    usage: OpenAIUsage


class CompletionRequest(OpenAISampling):
    prompt: str


class ChatCompletionMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatCompletionRequest(OpenAISampling):
    messages: list[ChatCompletionMessage] = Field(min_length=1, max_length=MAX_LIST_ITEMS)


FinishReason = Literal["stop", "length"]


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, usage: dict[str, int]) -> CompletionUsage:
        """From the decoder's last event (a stream cut short has none: zeros)."""
        prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
        return cls(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        )


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    logprobs: None = None
    finish_reason: FinishReason


class CompletionResponse(BaseModel):
    """`/v1/completions` without `stream` (streamed: chunks of these fields but usage, with
    `finish_reason` null until the last)."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatCompletionChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    logprobs: None = None
    finish_reason: FinishReason


class ChatCompletionResponse(BaseModel):
    """`/v1/chat/completions` without `stream` (streamed: `chat.completion.chunk`s with a
    `delta` in place of `message`)."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatCompletionChoice]
    usage: CompletionUsage

"""Request and response bodies of the OpenAI-compatible `/v1/*` routes (OpenAI's field names).

Unknown fields (`user`, `n`, `logprobs`...) are ignored, as OpenAI-compatible servers commonly do,
so existing clients work unchanged.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from semsearch.service.generation import SEED_MAX, Sampling, stop_list
from semsearch.service.schemas import StopList, Texts
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


class OpenAISampling(BaseModel):
    """OpenAI's sampling fields; `max_tokens` defaults to 16 for completions as OpenAI's does."""

    model: str | None = None
    max_tokens: int | None = Field(None, ge=0, le=8192)
    max_completion_tokens: int | None = Field(None, ge=0, le=8192)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: str | StopList | None = None
    seed: int | None = Field(None, ge=0, le=SEED_MAX)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    # Not OpenAI's, but llama.cpp's server accepts them on /v1 too.
    top_k: int = Field(0, ge=0)
    repetition_penalty: float = Field(1.0, gt=0.0, le=10.0)

    def sampling(self, default_max_tokens: int) -> Sampling:
        limit = self.max_completion_tokens if self.max_completion_tokens is not None else None
        limit = limit if limit is not None else self.max_tokens
        return Sampling(
            max_new_tokens=default_max_tokens if limit is None else limit,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            repetition_penalty=self.repetition_penalty,
            stop=stop_list(self.stop),
            seed=self.seed,
        )

    @property
    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


class CompletionRequest(OpenAISampling):
    prompt: str


class ChatCompletionMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatCompletionRequest(OpenAISampling):
    messages: list[ChatCompletionMessage] = Field(min_length=1, max_length=MAX_LIST_ITEMS)

"""Request and response bodies of the OpenAI-compatible `/v1/*` routes (OpenAI's field names).

OpenAI fields this server cannot honour (`n` > 1, `tools`, `logprobs`, `dimensions` other than the
model's...) are refused with a 400 naming the field (`service.openai_unsupported`); fields that
only label a request (`user`, `metadata`) and unknown ones are ignored. `model` in a response is
the served model's name, whatever the request said.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, Field

from semsearch.service.openai_unsupported import refuse_token_ids
from semsearch.service.sampling_schema import OpenAISampling
from semsearch.service.schemas import Texts
from semsearch.service.settings import MAX_LIST_ITEMS
from semsearch.service.token_lists import integers_only

# OpenAI also takes token ids as `input` (LangChain's OpenAIEmbeddings sends tiktoken's by
# default); they are parsed only to be refused with what to change (`openai_unsupported`).
TokenIds = Annotated[list[int], Field(max_length=MAX_LIST_ITEMS), BeforeValidator(integers_only)]


class OpenAIEmbeddingRequest(BaseModel):
    """`/v1/embeddings`."""

    input: str | Texts | TokenIds | Annotated[list[TokenIds], Field(max_length=MAX_LIST_ITEMS)]
    model: str | None = Field(None, description="any name: the served model answers")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, description="only the model's own (384)")

    def texts(self) -> list[str]:
        """The inputs as texts; token ids are refused (400) with what to change."""
        if isinstance(self.input, str):
            return [self.input]
        refuse_token_ids(self.input)
        return list(self.input)  # type: ignore[arg-type]  # strings, once ids are refused


class ModelCard(BaseModel):
    """One entry of `/v1/models`."""

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "semsearch"
    kind: Literal["embedding", "generation"]
    context_length: int = Field(description="tokens per input (embedding) or in all (generation)")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


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


class PromptTokensDetails(BaseModel):
    cached_tokens: int  # prompt tokens whose keys and values the prefix cache had


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails

    @classmethod
    def of(cls, usage: dict[str, int]) -> CompletionUsage:
        """From the decoder's last event (a stream cut short has none: zeros)."""
        prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
        return cls(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=usage.get("cached_tokens", 0)),
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

"""Request and response bodies of the HTTP API (API.md); field names follow TEI and OpenAI."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class EmbedRequest(BaseModel):
    """TEI's `/embed`."""

    model_config = ConfigDict(extra="forbid")

    inputs: str | list[str]
    normalize: bool = True
    truncate: bool = True

    def texts(self) -> list[str]:
        return [self.inputs] if isinstance(self.inputs, str) else list(self.inputs)


class OpenAIEmbeddingRequest(BaseModel):
    """OpenAI's `/v1/embeddings`; unknown fields (`user`, `dimensions`) are ignored like OpenAI."""

    input: str | list[str]
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


class Health(BaseModel):
    status: Literal["ok", "loading", "failed"]
    detail: str | None = None


class Info(BaseModel):
    version: str
    model_id: str
    encoder: dict = Field(description="fingerprint: weights/vocab hashes, dim, max length, backend")
    decoder: dict | None = None
    index: dict | None = None
    limits: dict


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, min_length=1, max_length=512)
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class UpsertRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    documents: list[DocumentIn]


class UpsertResponse(BaseModel):
    upserted: int
    ids: list[str] | None = Field(None, description="all ids, present when any was generated")


class DocumentOut(BaseModel):
    id: str
    text: str
    metadata: dict[str, Any]


class DeleteResponse(BaseModel):
    deleted: str


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str
    k: int = Field(10, ge=1, le=1000)
    filter: dict[str, Any] | None = None
    score_threshold: float | None = None


class Hit(BaseModel):
    id: str
    score: float
    text: str
    metadata: dict[str, Any]


class SearchResponse(BaseModel):
    hits: list[Hit]
    took_ms: float


class TokenizeRequest(BaseModel):
    """TEI's `/tokenize`."""

    model_config = ConfigDict(extra="forbid")

    inputs: str | list[str]
    add_special_tokens: bool = True

    def texts(self) -> list[str]:
        return [self.inputs] if isinstance(self.inputs, str) else list(self.inputs)


class Token(BaseModel):
    id: int
    text: str
    special: bool
    start: int | None = Field(
        None, description="character offset into the input; null for specials"
    )
    stop: int | None = None

"""Request and response bodies of the native routes (API.md); field names follow TEI and Qdrant."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt

from semsearch.service.sampling_schema import NativeSampling
from semsearch.service.settings import MAX_LIST_ITEMS, MAX_TOKEN_IDS
from semsearch.service.token_lists import integers_only

# Lists the parser refuses past a ceiling before validating any item (the limits in Settings, a
# 413 naming the setting, are checked after parsing).
Texts = Annotated[list[str], Field(max_length=MAX_LIST_ITEMS)]
# Token ids, as TEI takes them: integers only (no floats, no booleans). Their range (the
# vocabulary) and count (SEMSEARCH_MAX_INPUT_CHARS: an id counts as a character) are checked after
# parsing; the parser refuses a list past MAX_TOKEN_IDS before looking at its items.
TokenIds = Annotated[
    list[StrictInt], Field(max_length=MAX_TOKEN_IDS), BeforeValidator(integers_only)
]


class ErrorResponse(BaseModel):
    """Every error of a native route."""

    error: str
    error_type: Literal[
        "Validation", "Overloaded", "NotFound", "Unauthorized", "Unhealthy", "Backend"
    ]
    request_id: str | None = Field(None, description="also in the x-request-id header")


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorResponse(BaseModel):
    """Every error of a `/v1/*` route (OpenAI's envelope)."""

    error: OpenAIErrorDetail
    request_id: str | None = Field(None, description="also in the x-request-id header")


# Declared on every route, so the OpenAPI document says what an error looks like (and FastAPI's
# default 422 shape, which this service never sends, is left out).
NATIVE_ERRORS: dict[int | str, dict] = {
    "4XX": {"model": ErrorResponse, "description": "the request's fault (or 429: retry later)"},
    "5XX": {"model": ErrorResponse, "description": "the server's fault, or not ready (503)"},
}
OPENAI_ERRORS: dict[int | str, dict] = {
    "4XX": {"model": OpenAIErrorResponse, "description": "the request's fault"},
    "5XX": {"model": OpenAIErrorResponse, "description": "the server's fault, or not ready"},
}
# A route's 200 with `stream: true`: Server-Sent Events in place of the response model's JSON.
STREAMED: dict[int | str, dict] = {200: {"content": {"text/event-stream": {}}}}


class EmbedRequest(BaseModel):
    """TEI's `/embed`: a text, token ids, or a batch of either (mixed)."""

    model_config = ConfigDict(extra="forbid")

    inputs: str | TokenIds | Annotated[list[str | TokenIds], Field(max_length=MAX_LIST_ITEMS)]
    normalize: bool = True
    truncate: bool = True
    # TEI's spelling, and the lower-case aliases TEI accepts too.
    truncation_direction: Literal["Right", "Left", "right", "left"] = Field(
        "Right", description="with truncate: Right keeps an input's start, Left its end"
    )
    prompt_name: str | None = Field(
        None, description="a key of the model's sentence-transformers `prompts`, put before texts"
    )
    details: bool = Field(
        False,
        description="answer an EmbedDetails object (vectors, tokens per input, whether each was "
        "truncated) instead of TEI's bare array of vectors",
    )

    def items(self) -> list[str | list[int]]:
        """One item per input: a text, or a list of token ids."""
        inputs = self.inputs
        if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)):
            return [inputs]  # one text, or one list of ids
        return list(inputs)

    def truncation_side(self) -> str:
        """The tokenizer's name for the direction: "right" | "left"."""
        return self.truncation_direction.lower()


class EmbedDetails(BaseModel):
    """`/embed` with `details: true`: per input, in input order, its vector and its tokens."""

    embeddings: list[list[float]]
    n_tokens: list[int] = Field(
        description="tokens fed to the model, [CLS] and [SEP] included (after any truncation)"
    )
    truncated: list[bool] = Field(
        description="the input had more tokens than the model's maximum and was cut to it"
    )


class Health(BaseModel):
    status: Literal["ok", "loading", "failed"]
    detail: str | None = None


class Info(BaseModel):
    version: str
    model_id: str
    encoder: dict = Field(description="fingerprint: weights/vocab hashes, dim, max length, backend")
    encoder_choice: dict | None = Field(
        None,
        description="backend auto only: the backend chosen, why, and the export's measurements",
    )
    decoder: dict | None = None
    index: dict | None = None
    limits: dict


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, min_length=1, max_length=512)
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class ChunkingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tokens: int | None = Field(
        None, ge=1, description="tokens per chunk; default and most: what the encoder takes"
    )
    overlap: int | None = Field(
        None, ge=0, description="tokens consecutive chunks share; default min(32, tokens / 4)"
    )


class UpsertRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    documents: Annotated[list[DocumentIn], Field(max_length=MAX_LIST_ITEMS)]
    chunking: ChunkingIn | None = Field(
        None, description="how long texts are cut; without it, where the encoder needs"
    )


class UpsertResponse(BaseModel):
    upserted: int
    ids: list[str] | None = Field(None, description="all ids, present when any was generated")
    chunks: int | None = Field(
        None, description="units stored (whole documents and chunks), present when any was chunked"
    )


class DocumentOut(BaseModel):
    id: str
    text: str
    metadata: dict[str, Any]


class StoredDocument(DocumentOut):
    chunks: int = Field(description="how many chunks it is stored as; 0: stored whole")


class DeleteResponse(BaseModel):
    deleted: str


class IndexOptions(BaseModel):
    """A collection's vector index settings (index/config.py), bounded."""

    model_config = ConfigDict(extra="forbid")

    flat_max: int | None = Field(None, ge=1, le=10_000_000, description="auto: exact below this")
    ef_construction: int | None = Field(None, ge=1, le=1024, description="HNSW build effort")
    ef_search: int | None = Field(None, ge=1, le=4096, description="HNSW search effort")
    nprobe: int | None = Field(None, ge=0, le=65_536, description="IVF lists searched; 0: auto")
    exact_filter_max: int | None = Field(
        None, ge=0, le=1_000_000, description="filters matching at most this many: exact search"
    )


class CollectionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=64, description="1-64 letters, digits, '_', '-'")
    index_type: str | None = Field(
        None,
        max_length=32,
        description="auto (default), Flat, HNSW<M>, IVF or IVF<nlist>,Flat; compressed: "
        "HNSW<M>,SQ8, IVF<nlist>,SQ8, IVF<nlist>,PQ<m>, IVF<nlist>,PQ<m>,Refine(SQ8|Flat)",
    )
    index_options: IndexOptions | None = None
    chunking: ChunkingIn | None = Field(
        None, description="the default for /documents requests that name none"
    )


class CollectionInfo(BaseModel):
    name: str
    loaded: bool = Field(
        description="open in this server; false: read from its files by the listing, which opens "
        "none (factory null, tombstones 0)"
    )
    count: int
    dim: int | None
    metric: str
    index_type: str
    factory: str | None
    tombstones: int
    bytes_on_disk: int
    chunking: dict[str, int] = Field(description="the default chunking, as set ({}: none)")


class CollectionList(BaseModel):
    collections: list[CollectionInfo]


class DroppedCollection(BaseModel):
    dropped: str


class FieldIndexRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str = Field(max_length=256, description="a filter field: `lang`, `author.name`")


class FieldIndex(BaseModel):
    field: str
    created: bool = Field(description="false: the field had an index already")


class FieldIndexList(BaseModel):
    fields: list[str]


class SnapshotInfo(BaseModel):
    name: str
    created: str = Field(description="UTC, ISO 8601")
    documents: int
    bytes: int


class SnapshotList(BaseModel):
    snapshots: list[SnapshotInfo]


class DeletedSnapshot(BaseModel):
    deleted: str


class DocumentPage(BaseModel):
    documents: list[DocumentOut]
    next_cursor: str | None = Field(
        description="pass as `cursor` for the next page; null on the last page"
    )


class CountResponse(BaseModel):
    count: int


class DeleteManyRequest(BaseModel):
    """Exactly one of `ids` and `filter`."""

    model_config = ConfigDict(extra="forbid")

    ids: Annotated[list[str], Field(min_length=1, max_length=MAX_LIST_ITEMS)] | None = None
    filter: dict[str, Any] | None = None


class DeleteManyResponse(BaseModel):
    deleted: int


SearchMode = Literal["dense", "keyword", "hybrid"]
_MODE = (
    "dense: cosine similarity of embeddings; keyword: BM25 over the texts' terms; hybrid: both, "
    "fused by reciprocal rank"
)


class FusionWeights(BaseModel):
    """A side's multiplier in the reciprocal-rank sum."""

    model_config = ConfigDict(extra="forbid")

    dense: float = Field(1.0, ge=0, allow_inf_nan=False)
    keyword: float = Field(1.0, ge=0, allow_inf_nan=False)


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str
    k: int = Field(10, ge=1, description="at most SEMSEARCH_MAX_SEARCH_K (default 100)")
    filter: dict[str, Any] | None = None
    score_threshold: float | None = Field(
        None, allow_inf_nan=False, description="compared with `score` (cosine, BM25 or fused)"
    )
    mode: SearchMode = Field("dense", description=_MODE)
    rrf_k: int = Field(60, ge=1, le=1_000_000, description="hybrid: the rank constant of RRF")
    weights: FusionWeights | None = Field(None, description="hybrid: default 1 each")
    candidates: int | None = Field(
        None,
        ge=1,
        description="hybrid: hits taken from each side before fusing; default max(k, 50), at "
        "most SEMSEARCH_MAX_SEARCH_K",
    )


class FoundBy(BaseModel):
    rank: int = Field(description="from 1, in that side's own ranking")
    score: float = Field(description="that side's score: cosine (dense) or BM25 (keyword)")


class Hit(BaseModel):
    id: str
    score: float = Field(description="dense: cosine; keyword: BM25; hybrid: the fused RRF score")
    text: str
    metadata: dict[str, Any]
    found_by: dict[Literal["dense", "keyword"], FoundBy] | None = Field(
        None, description="keyword and hybrid modes: where each side that found the hit ranked it"
    )


class SearchResponse(BaseModel):
    hits: list[Hit]
    took_ms: float


class TokenizeRequest(BaseModel):
    """TEI's `/tokenize`."""

    model_config = ConfigDict(extra="forbid")

    inputs: str | Texts
    add_special_tokens: bool = True

    def texts(self) -> list[str]:
        return [self.inputs] if isinstance(self.inputs, str) else list(self.inputs)


class DecodeRequest(BaseModel):
    """TEI's `/decode`: token ids back to text, one sequence or a batch of them."""

    model_config = ConfigDict(extra="forbid")

    ids: TokenIds | Annotated[list[TokenIds], Field(max_length=MAX_LIST_ITEMS)]
    skip_special_tokens: bool = True

    def sequences(self) -> list[list[int]]:
        ids = self.ids
        if ids and isinstance(ids[0], list):
            return list(ids)
        return [ids] if ids else []


class Token(BaseModel):
    id: int
    text: str
    special: bool
    start: int | None = Field(
        None, description="character offset into the input; null for specials"
    )
    stop: int | None = None


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class GenerateRequest(NativeSampling):
    model_config = ConfigDict(extra="forbid")

    prompt: str | None = None
    messages: Annotated[list[ChatMessage], Field(max_length=MAX_LIST_ITEMS)] | None = None


class GenerateUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    # Of prompt_tokens, those whose keys and values the prefix cache had (no prefill for them)
    cached_tokens: int = 0

    @classmethod
    def of(cls, usage: dict[str, int], prompt_tokens: int = 0) -> GenerateUsage:
        """From the decoder's last event (a stream cut short has none: `prompt_tokens`)."""
        return cls(
            prompt_tokens=usage.get("prompt_tokens", prompt_tokens),
            completion_tokens=usage.get("completion_tokens", 0),
            cached_tokens=usage.get("cached_tokens", 0),
        )


class GenerateResponse(BaseModel):
    text: str
    finish_reason: Literal["stop", "length"]
    usage: GenerateUsage


class RagRequest(NativeSampling):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1)
    k: int = Field(4, ge=1, le=20)
    filter: dict[str, Any] | None = None
    score_threshold: float | None = Field(None, allow_inf_nan=False)
    mode: SearchMode = Field("dense", description=_MODE)


class Source(BaseModel):
    id: str
    score: float
    text: str


class RagResponse(BaseModel):
    answer: str
    finish_reason: Literal["stop", "length"]
    sources: list[Source]
    usage: GenerateUsage

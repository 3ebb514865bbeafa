"""Service settings: the only place `SEMSEARCH_*` variables are read (beside `semsearch.paths`,
which reads the two that locate the data and models directories).

Precedence (API.md): command-line flags, then `SEMSEARCH_*` environment variables, then the
settings file (TOML, named by `SEMSEARCH_CONFIG` or `--config`: `service/config_file.py`), then
defaults. The CLI passes its flags as init kwargs, which pydantic-settings ranks above the
environment; the file's source comes after both, so they can say which file it is.
Default paths come from `semsearch.paths` when the settings are built (never the source tree):
the collection in the data directory, the model files in the models directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from semsearch import paths
from semsearch.encoder.onnx.accuracy import Thresholds
from semsearch.service.config_file import ConfigFileSource

if TYPE_CHECKING:
    from semsearch.encoder.onnx.embedder import OnnxOptions
    from semsearch.index import Limits

# The int8 acceptance figures are written once, in the accuracy report's own defaults.
_INT8 = Thresholds()

# Ceilings the request parser enforces on list lengths before it looks at a single item (a body
# of 900k bad items must not cost 900k error objects); the settings below stay under them.
MAX_LIST_ITEMS = 4096
MAX_STOP_ITEMS = 64
MAX_TOKENS_CEILING = 8192  # the most tokens a request may name; parsing refuses more
MAX_TOKEN_IDS = 32_768  # ids in one list of token ids (/embed, /decode); parsing refuses more

Backend = Literal["auto", "torch", "onnx", "onnx-int8", "openvino", "openvino-int8"]
BACKENDS: tuple[str, ...] = get_args(Backend)
Store = Literal["local", "qdrant", "none"]
# `semsearch serve --workers N` hands the settings it resolved (flags, variables, file) to its
# worker processes in this variable: not a setting, read only by `worker_settings()`.
WORKER_ENV = "_SEMSEARCH_WORKER_SETTINGS"
# SEMSEARCH_QDRANT_URL for qdrant-client's in-process mode: nothing kept past the process, one
# process only (no --workers), slow past a few thousand documents. For trying the store out.
QDRANT_IN_PROCESS = ":memory:"
# The settings that bound one request's work; `/info` reports them.
REQUEST_LIMITS = (
    "max_client_batch_size",
    "max_documents_per_request",
    "max_chunks_per_request",
    "max_body_bytes",
    "body_timeout_s",
    "max_connections",
    "max_input_chars",
    "max_document_chars",
    "max_search_k",
    "max_page_size",
    "max_prompt_chars",
    "max_new_tokens",
    "max_chat_messages",
    "max_stop_sequences",
    "max_stop_chars",
    "max_concurrent_generations",
    "max_batch_tokens",
    "max_queue_requests",
    "max_filter_conditions",
    "max_keyword_terms",
    "max_metadata_bytes",
    "max_metadata_depth",
    "query_timeout_s",
    "max_pending_searches",
    "lock_timeout_s",
)


class Settings(BaseSettings):
    # An empty variable counts as unset, as in semsearch.paths.
    # A bad value is reported by its setting and pydantic's reason, never echoed (it may be a key).
    model_config = SettingsConfigDict(
        env_prefix="SEMSEARCH_", extra="ignore", env_ignore_empty=True, hide_input_in_errors=True
    )

    # A TOML file of settings (keys: these field names), ranked below flags and the environment.
    config: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # `semsearch serve`: uvicorn worker processes on that port, each loading its own models.
    workers: int = Field(1, ge=1)
    # Log lines: text, or one JSON object per line (with one access line per request).
    log_format: Literal["text", "json"] = "text"
    api_key: str | None = None
    # Browser origins allowed to call the API (CORS), comma-separated; "*" allows any; empty: off,
    # so a page on another site cannot read the answers with its visitor's network access.
    cors_origins: str = ""

    # Default paths (semsearch.paths, read when the settings are built): the collection in the
    # data directory ($SEMSEARCH_DATA_DIR, else ~/.local/share/semsearch or its XDG equivalent),
    # the model files in the models directory ($SEMSEARCH_MODELS_DIR, else the data dir's models/).
    index_dir: Path = Field(default_factory=paths.index_dir)
    # Named collections (POST /collections), one directory each; the default one is index_dir.
    collections_dir: Path | None = None  # None: `collections/` beside index_dir
    max_collections: int = Field(32, ge=1)  # open at once, the default included; more -> 429
    # POST /collections/{name}/snapshots: full copies, at most max_snapshots per collection
    snapshots_dir: Path | None = None  # None: `snapshots/` beside index_dir
    max_snapshots: int = Field(5, ge=1, le=1000)

    # Where documents live. local: SQLite + FAISS under index_dir; qdrant: a Qdrant server or
    # cluster; none: embed-only (embeddings and tokenization; no directory is created or opened,
    # the document, search, collection and RAG routes answer 503).
    store: Store = "local"
    # store=qdrant (declared after `store`: the URL's check reads it). The key is never logged;
    # a collection that does not exist yet is created with these shard and replica counts
    # (Qdrant's shard_number and replication_factor).
    qdrant_url: str | None = None  # http(s)://host:6333, or ":memory:" (in-process, to try out)
    qdrant_api_key: SecretStr | None = None
    # Named collections are `<this>__<name>` (service/collection_places.py): no `__` here, so one
    # deployment's collections never read as another's.
    qdrant_collection: str = Field(
        "semsearch", pattern=r"^[A-Za-z0-9](?:_?[A-Za-z0-9-])*_?$", max_length=200
    )
    qdrant_shard_number: int = Field(1, ge=1)
    qdrant_replication_factor: int = Field(1, ge=1)

    # Encoder
    model_dir: Path | None = None  # None: onnx/model/ for the ONNX backends, else all-MiniLM-L6-v2
    # auto: the fastest artifact within the accuracy gates, as `semsearch export` measured on this
    # machine (backend_choice.json beside the artifacts); /info says which and why.
    backend: Backend = "auto"
    threads: int | None = Field(None, ge=1)  # None: the runtime's default (ONNX: all cores)

    # The ONNX artifacts (every backend but torch): from `make artifacts`
    onnx_dir: Path = Field(default_factory=paths.onnx_dir)
    onnx_sequential: bool = True  # ORT_SEQUENTIAL execution
    onnx_memory_arena: bool = True  # ORT's CPU memory arena
    # ORT's intra-op workers spin between parallel sections by default; in a server they would
    # burn the cores the event loop and the tokenizer need, so they sleep instead.
    onnx_spinning: bool = False
    # Backend openvino: f32 (exact) or bf16 (inside the int8 gates; measured slower than f32 on
    # this project's AVX512_BF16 CPU without AMX, so not the default: docs/benchmarks.md).
    openvino_precision: Literal["f32", "bf16"] = "f32"
    # An int8 artifact is served only if its accuracy report meets these (vs torch fp32).
    int8_min_cosine: float = Field(_INT8.min_cosine, ge=0.0, le=1.0)
    int8_mean_cosine: float = Field(_INT8.mean_cosine, ge=0.0, le=1.0)
    int8_top10_agreement: float = Field(_INT8.top10_agreement, ge=0.0, le=1.0)

    # Decoder
    # Weights format; off = no generation. int4 runs the GGUF's own 4-bit codes: 3.8x transformers'
    # decode; greedy output equals fp32's except where fp32's top-2 logits are close (README).
    decoder: Literal["fp32", "int8", "int4", "off"] = "int4"
    gguf_path: Path = Field(default_factory=paths.gguf_path)
    max_concurrent_generations: int = Field(1, ge=1)  # more at once -> 429
    rag_max_source_chars: int = Field(1200, ge=100)
    # Keys and values of recent prompts' beginnings (system prompt, RAG instructions, earlier chat
    # turns), reused by prompts that begin alike; 0 = off. SmolLM2 takes 45 KiB per token.
    prefix_cache_mb: float = Field(128.0, ge=0, le=1_048_576, allow_inf_nan=False)

    # Request limits (TEI's names where it has them). Each bounds the work one request can cause;
    # past a limit the answer is 413 (too much) or 422 (malformed), naming the setting.
    max_client_batch_size: int = Field(32, ge=1, le=MAX_LIST_ITEMS)  # inputs per /embed request
    max_documents_per_request: int = Field(1024, ge=1, le=MAX_LIST_ITEMS)
    max_chunks_per_request: int = Field(4096, ge=1)  # units one /documents request stores
    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1024)
    body_timeout_s: float = Field(30.0, gt=0)  # for a request body to arrive in full; then 408
    max_connections: int = Field(512, ge=1)  # open connections and tasks; more -> 503 (uvicorn)
    # Characters of one embedding / tokenize input, a search or RAG query.
    max_input_chars: int = Field(100_000, ge=1)
    max_document_chars: int = Field(100_000, ge=1)  # stored text of one document
    max_search_k: int = Field(100, ge=1)  # hits per /search (k x document size bounds a reply)
    max_page_size: int = Field(1000, ge=1, le=MAX_LIST_ITEMS)  # documents per GET /documents page
    max_prompt_chars: int = Field(65_536, ge=1)  # a prompt, or all chat messages together
    max_new_tokens: int = Field(2048, ge=1, le=MAX_TOKENS_CEILING)  # tokens one generation adds
    max_chat_messages: int = Field(256, ge=1, le=MAX_LIST_ITEMS)
    max_stop_sequences: int = Field(8, ge=0, le=MAX_STOP_ITEMS)
    max_stop_chars: int = Field(128, ge=1)  # characters of one stop sequence
    # The collection (index.Limits): filters, metadata, SQL time, another process's write lock.
    max_filter_conditions: int = Field(256, ge=1)  # an `in` list's items count one each
    max_keyword_terms: int = Field(64, ge=1)  # distinct terms of a keyword or hybrid query
    # Memory for the keyword postings searches read, per open collection (index/bm25.py).
    keyword_cache_mb: int = Field(64, ge=1, le=1_048_576)
    max_metadata_bytes: int = Field(65_536, ge=1)  # one document's metadata as compact JSON
    max_metadata_depth: int = Field(32, ge=1)  # nesting of objects and lists in metadata
    query_timeout_s: float = Field(5.0, gt=0)  # one SQL query of a search; then 503
    search_threads: int = Field(2, ge=1)  # threads that run searches (not reads or writes)
    max_pending_searches: int = Field(64, ge=1)  # searches running or waiting; more -> 429
    lock_timeout_s: float = Field(10.0, gt=0)  # waiting for another process's writer; then 503

    # Dynamic batching
    max_batch_tokens: int = Field(16_384, ge=256)
    max_batch_requests: int = Field(64, ge=1)
    # 0: a batch is whatever queued while the model ran (continuous batching, as TEI); waiting
    # longer only delays a lone request (bench/bench_service.py: +2 ms at concurrency 1).
    max_wait_ms: float = Field(0.0, ge=0.0)
    max_queue_requests: int = Field(512, ge=1)  # a full queue answers 429
    # How long a thread may hold the GIL before another gets it (Python's default is 5 ms): the
    # event loop waits at most this per switch behind a tokenizer thread.
    switch_interval_ms: float = Field(1.0, gt=0, le=100)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Highest first; the defaults come last on their own. No .env or secrets directory.
        return init_settings, env_settings, ConfigFileSource(settings_cls)

    def onnx_options(self) -> OnnxOptions:
        """The encoder's ONNX options (`encoder.load_embedder(onnx_options=...)`)."""
        from semsearch.encoder.onnx.embedder import OnnxOptions

        return OnnxOptions(
            artifact_dir=self.onnx_dir,
            sequential=self.onnx_sequential,
            memory_arena=self.onnx_memory_arena,
            spinning=self.onnx_spinning,
            openvino_precision=self.openvino_precision,
            thresholds=Thresholds(
                self.int8_min_cosine, self.int8_mean_cosine, self.int8_top10_agreement
            ),
        )

    @model_validator(mode="after")
    def _default_apart_from_the_named(self) -> Settings:
        # The default collection inside the named collections' directory would be listed, and
        # could be dropped, as one of them.
        root, index = self.collections_root().resolve(), self.index_dir.resolve()
        if index == root or root in index.parents:
            raise ValueError(
                f"SEMSEARCH_INDEX_DIR ({self.index_dir}) is inside SEMSEARCH_COLLECTIONS_DIR "
                f"({self.collections_root()}): keep the default collection out of it"
            )
        return self

    def collections_root(self) -> Path:
        return self.collections_dir or self.index_dir.parent / "collections"

    def snapshots_root(self) -> Path:
        return self.snapshots_dir or self.index_dir.parent / "snapshots"

    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    def index_limits(self) -> Limits:
        """The collection's share of the request limits."""
        from semsearch.index import Limits

        return Limits(
            max_filter_conditions=self.max_filter_conditions,
            max_keyword_terms=self.max_keyword_terms,
            keyword_cache_mb=self.keyword_cache_mb,
            max_metadata_bytes=self.max_metadata_bytes,
            max_metadata_depth=self.max_metadata_depth,
            query_timeout_s=self.query_timeout_s,
            lock_timeout_s=self.lock_timeout_s,
        )

    @field_validator(
        "config",
        "index_dir",
        "collections_dir",
        "snapshots_dir",
        "onnx_dir",
        "gguf_path",
        "model_dir",
    )
    @classmethod
    def _expand_home(cls, value: Path | None) -> Path | None:
        # `~` means the home directory, as in semsearch.paths.
        return value.expanduser() if value is not None else None

    @field_validator("api_key", "qdrant_api_key")
    @classmethod
    def _key_is_visible_ascii(
        cls, value: str | SecretStr | None, info: ValidationInfo
    ) -> str | SecretStr | None:
        key = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not key:
            return None  # empty: no key
        if not all("!" <= c <= "~" for c in key):
            raise ValueError(
                f"SEMSEARCH_{str(info.field_name).upper()} must be visible ASCII characters (no "
                "spaces): HTTP headers carry nothing else reliably"
            )
        return value

    @field_validator("qdrant_url")
    @classmethod
    def _qdrant_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if not value:
            if info.data.get("store") == "qdrant":
                raise ValueError(
                    "SEMSEARCH_STORE=qdrant needs the server's URL here (http://qdrant:6333)"
                )
            return None
        if value == QDRANT_IN_PROCESS:
            if info.data.get("workers", 1) > 1:
                raise ValueError(f"{QDRANT_IN_PROCESS} lives in one process: use one worker")
            return value
        parts = urlsplit(value)  # .port raises ValueError for a port out of range or no number
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.port == 0:
            raise ValueError(
                "expected an http:// or https:// URL with a host (http://qdrant:6333), or "
                f"{QDRANT_IN_PROCESS} (qdrant-client's in-process mode, for trying it out)"
            )
        return value.rstrip("/")


def worker_environment(settings: Settings, log_level: str) -> dict[str, str]:
    """What `semsearch serve --workers N` adds to its workers' environment: these settings as
    resolved (keys included) and the log level, so each worker builds the same app."""
    values = settings.model_dump(mode="json")
    for name, value in settings:
        if isinstance(value, SecretStr):
            values[name] = value.get_secret_value()
    return {WORKER_ENV: json.dumps({"settings": values, "log_level": log_level})}


def worker_settings() -> tuple[Settings, str]:
    """In a worker process of `semsearch serve --workers N`: the settings and log level its
    parent resolved (validated again; no variable or file is read a second time)."""
    handed = os.environ.get(WORKER_ENV)
    if not handed:
        raise RuntimeError(
            f"{WORKER_ENV} is unset: this runs in the worker processes that "
            "`semsearch serve --workers N` starts"
        )
    payload = json.loads(handed)
    # Validated as given, without the sources (BaseSettings.__init__ would read the environment
    # and the file again), as BaseModel.__init__ does with an instance.
    settings = Settings.__new__(Settings)
    Settings.__pydantic_validator__.validate_python(payload["settings"], self_instance=settings)
    return settings, payload["log_level"]

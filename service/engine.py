"""The models behind the routes: loading them off the event loop, and embedding in three steps.

Pre (tokenize, check lengths) runs on arrival; core (the padded batch through the model) runs on a
worker thread so the event loop never blocks; post (slicing, optional normalization) comes after.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.errors import PayloadTooLarge, Unhealthy, ValidationFailed
from service.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Embedded:
    vectors: np.ndarray  # (n, dim) float32, input order
    token_counts: list[int]


class EmbeddingEngine:
    """Owns one embedder; serializes model calls on a dedicated thread."""

    def __init__(self, embedder: Any, settings: Settings) -> None:
        self.embedder = embedder
        self.settings = settings
        self._model_lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return str(getattr(self.embedder, "model_id", "semsearch-encoder"))

    @property
    def max_length(self) -> int:
        return int(self.embedder.max_length)

    def tokenize(self, texts: Sequence[str], truncate: bool) -> list[Any]:
        """Pre: WordPiece encodings, truncated to the model's length, or 413 when too long."""
        if not texts:
            raise ValidationFailed("`inputs` must contain at least one text")
        if len(texts) > self.settings.max_client_batch_size:
            raise PayloadTooLarge(
                f"batch size {len(texts)} > maximum allowed batch size "
                f"{self.settings.max_client_batch_size}; split the request"
            )
        tokenizer = self.embedder.tokenizer
        if truncate:
            return tokenizer.encode_batch(texts, max_length=self.max_length)
        encodings = tokenizer.encode_batch(texts)
        for i, enc in enumerate(encodings):
            if len(enc) > self.max_length:
                raise PayloadTooLarge(
                    f"input {i} has {len(enc)} tokens, more than the model's maximum of "
                    f"{self.max_length}; shorten it or send `truncate: true`"
                )
        return encodings

    def _run_core(self, encodings: Sequence[Any], normalize: bool) -> np.ndarray:
        arrays = self.embedder.tokenizer.pad(encodings)
        with self._model_lock:
            return self.embedder.encode_batch_arrays(
                arrays["input_ids"],
                arrays["attention_mask"],
                arrays["token_type_ids"],
                normalize=normalize,
            )

    async def embed(self, texts: Sequence[str], *, normalize: bool, truncate: bool) -> Embedded:
        encodings = self.tokenize(texts, truncate)
        # Sort by length so one call pads little; restore input order afterwards.
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i]))
        ordered = [encodings[i] for i in order]
        vectors_sorted = await asyncio.to_thread(self._run_core, ordered, normalize)
        vectors = np.empty_like(vectors_sorted)
        vectors[order] = vectors_sorted
        return Embedded(vectors=vectors, token_counts=[len(e) for e in encodings])


class Models:
    """Loads the models in the background so `/health` can answer 503 until they are ready."""

    def __init__(self, settings: Settings, embedder: Any | None = None) -> None:
        self.settings = settings
        self.embedding: EmbeddingEngine | None = (
            EmbeddingEngine(embedder, settings) if embedder is not None else None
        )
        self.load_error: BaseException | None = None
        self.loaded_at: float | None = time.time() if embedder is not None else None
        self._thread: threading.Thread | None = None

    @property
    def ready(self) -> bool:
        return self.embedding is not None

    def start_loading(self) -> None:
        if self.ready or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._load, name="semsearch-load", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        from encoder import load_embedder

        started = time.perf_counter()
        try:
            embedder = load_embedder(
                model_dir=self.settings.model_dir,
                backend=self.settings.backend,
                threads=self.settings.threads,
            )
        except Exception as exc:  # kept and reported by /health; the cause is logged in full
            log.exception("loading the encoder failed")
            self.load_error = exc
            return
        self.embedding = EmbeddingEngine(embedder, self.settings)
        self.loaded_at = time.time()
        log.info("encoder ready in %.1fs (%s)", time.perf_counter() - started, embedder.backend)

    def require_embedding(self) -> EmbeddingEngine:
        if self.embedding is None:
            if self.load_error is not None:
                raise Unhealthy(f"the encoder failed to load: {self.load_error}")
            raise Unhealthy("the encoder is still loading; retry when GET /health answers 200")
        return self.embedding

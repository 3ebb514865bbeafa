"""Everything an app instance loads: encoder, collection and decoder, off the event loop.

Loading runs on a background thread so the server accepts connections at once: `/health`
(liveness) answers 200 meanwhile, `/ready` (readiness) 503 until every enabled component is in
memory. A failed load is final (`load_error`; both answer 503: only a restart retries). Each route
needs only its own components: `/embed` works while the decoder is still loading.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable

from semsearch.index import CollectionBackend
from semsearch.service.batcher import BatchStats
from semsearch.service.collections import CollectionRegistry, check_store, open_store
from semsearch.service.encoders import load_configured_embedder
from semsearch.service.engine import EmbeddingEngine
from semsearch.service.errors import Unhealthy
from semsearch.service.generation import GenerationEngine, GenerationStats
from semsearch.service.protocols import Embedder, TextGenerator
from semsearch.service.settings import Settings
from semsearch.service.workpool import WorkPool

log = logging.getLogger(__name__)


class Models:
    def __init__(
        self,
        settings: Settings,
        embedder: Embedder | None = None,
        generator: TextGenerator | None = None,
        on_batch: Callable[[BatchStats], None] | None = None,
        on_generation: Callable[[GenerationStats], None] | None = None,
    ) -> None:
        self.settings = settings
        self._on_batch = on_batch
        self._on_generation = on_generation
        self.embedding: EmbeddingEngine | None = None
        self.collection: CollectionBackend | None = None  # the default one
        self.collections: CollectionRegistry | None = None  # every one, the default included
        self.generation: GenerationEngine | None = None
        self.load_error: BaseException | None = None
        self.searches = WorkPool(
            "search", settings.search_threads, settings.max_pending_searches,
            "SEMSEARCH_MAX_PENDING_SEARCHES",
        )  # fmt: skip
        self._thread: threading.Thread | None = None
        if embedder is not None:
            self._attach_encoder(embedder)
        if generator is not None:
            self.generation = GenerationEngine(generator, settings, on_generation)

    @property
    def decoder_enabled(self) -> bool:
        return self.settings.decoder != "off"

    @property
    def ready(self) -> bool:
        decoder_ready = self.generation is not None or not self.decoder_enabled
        store_ready = self.collection is not None or self.settings.store == "none"
        return self.embedding is not None and store_ready and decoder_ready

    def _attach_encoder(self, embedder: Embedder) -> None:
        # SEMSEARCH_STORE=none opens nothing; a collection of another encoder is refused.
        opened = open_store(self.settings, embedder.dim, embedder.fingerprint())
        if opened is not None:
            self.collection, self.collections = opened
        self.embedding = EmbeddingEngine(embedder, self.settings, self._on_batch)

    def start_loading(self) -> None:
        if self.ready or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._load, name="semsearch-load", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        started = time.perf_counter()
        try:
            if self.embedding is None:
                embedder = load_configured_embedder(self.settings)
                self._attach_encoder(embedder)
                log.info("encoder ready (%s)", embedder.backend)
            if self.generation is None and self.decoder_enabled:
                from semsearch.decoder import load_generator

                generator = load_generator(
                    gguf_path=self.settings.gguf_path,
                    weights=self.settings.decoder,
                    prefix_cache_mb=self.settings.prefix_cache_mb,
                )
                self.generation = GenerationEngine(generator, self.settings, self._on_generation)
                log.info("decoder ready (%s weights)", self.settings.decoder)
        except Exception as exc:  # kept and reported by the probes; the cause is logged in full
            log.exception("loading the models failed")
            self.load_error = exc
            return
        # What is loaded now lives as long as the process: move it out of the collector's view, or
        # every full collection walks a few hundred thousand objects (100+ ms with the GIL held,
        # which is the event loop's time too).
        gc.collect()
        gc.freeze()
        elapsed = time.perf_counter() - started
        if self.collection is None:
            log.info("ready in %.1fs, keeping no documents (SEMSEARCH_STORE=none)", elapsed)
            return
        count = self.collection.count()
        log.info("ready in %.1fs: %d documents in %s", elapsed, count, self.settings.index_dir)

    def close(self) -> None:
        self.searches.close()
        collections = self.collections or self.collection
        for part in (self.embedding, collections, self.generation):
            if part is not None:
                part.close()

    def _missing(self, what: str) -> Unhealthy:
        if self.load_error is not None:
            return Unhealthy(f"the service failed to start: {self.load_error}")
        return Unhealthy(f"the {what} is still loading; retry when GET /ready answers 200")

    def require_embedding(self) -> EmbeddingEngine:
        if self.embedding is None:
            raise self._missing("encoder")
        return self.embedding

    def require_collection(self) -> CollectionBackend:
        """The default collection."""
        check_store(self.settings)
        if self.collection is None:
            raise self._missing("collection")
        return self.collection

    def require_collections(self) -> CollectionRegistry:
        check_store(self.settings)
        if self.collections is None:
            raise self._missing("collection")
        return self.collections

    def require_generation(self) -> GenerationEngine:
        if not self.decoder_enabled:
            raise Unhealthy("generation is switched off here (SEMSEARCH_DECODER=off)")
        if self.generation is None:
            raise self._missing("decoder")
        return self.generation

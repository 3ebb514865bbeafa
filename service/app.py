"""`create_app(settings)`: the app factory; its lifespan owns the models, so tests build apps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from semsearch import __version__
from semsearch.service.access import AccessLog
from semsearch.service.auth import ApiKeyGate
from semsearch.service.deps import COLLECTION_PARAM, collection_path_param, require_store
from semsearch.service.errors import install_error_handlers
from semsearch.service.limits import BodySizeLimit
from semsearch.service.metrics import Metrics, RequestMetrics
from semsearch.service.models import Models
from semsearch.service.protocols import Embedder, TextGenerator
from semsearch.service.request_id import RequestId
from semsearch.service.routes import (
    collections,
    documents,
    embeddings,
    generation,
    operations,
    rag,
    search,
    tokenize,
)
from semsearch.service.routes import (
    models as model_routes,
)
from semsearch.service.settings import Settings


def create_app(
    settings: Settings | None = None,
    *,
    embedder: Embedder | None = None,
    generator: TextGenerator | None = None,
) -> FastAPI:
    """Build the service. Pass loaded models to skip loading them (tests share one model)."""
    settings = settings or Settings()
    metrics = Metrics()
    models = Models(
        settings,
        embedder=embedder,
        generator=generator,
        on_batch=metrics.observe_batch,
        on_generation=metrics.observe_generation,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Load in the background: the server accepts connections at once, /health (liveness)
        # answers 200 and /ready (readiness) 503 until the models are in memory.
        models.start_loading()
        yield
        models.close()

    app = FastAPI(
        title="semsearch",
        version=__version__,
        summary="Embeddings, vector search and retrieval-augmented generation.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.models = models
    app.state.metrics = metrics
    install_error_handlers(app)
    # Outermost last: (CORS) -> request id -> access log -> metrics -> API key (headers only)
    # -> body limits -> routes.
    app.add_middleware(
        BodySizeLimit, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s
    )
    app.add_middleware(ApiKeyGate, api_key=settings.api_key)
    app.add_middleware(RequestMetrics, metrics=metrics)
    app.add_middleware(AccessLog)
    app.add_middleware(RequestId)  # every answer, a 401 or 413 included, carries the id
    if settings.cors_origin_list():
        # Outermost: a browser's preflight carries no key and must be answered before the gate.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list(),
            allow_methods=["GET", "HEAD", "POST", "DELETE"],
            allow_headers=["authorization", "content-type", "x-request-id"],
            expose_headers=["x-request-id"],
        )

    routers = (
        operations, model_routes, embeddings, tokenize, documents, search, generation, rag,
        collections,
    )  # fmt: skip
    # What needs the store answers 503 without one (SEMSEARCH_STORE=none), published all the same.
    store = [Depends(require_store)]
    for module in routers:
        needs_store = module in (documents, search, rag, collections)
        app.include_router(module.router, dependencies=store if needs_store else None)
    # The document, search and RAG routes once more, on a named collection.
    for module in (documents, search, rag):
        app.include_router(
            module.router,
            prefix=f"/collections/{{{COLLECTION_PARAM}}}",
            dependencies=[*store, Depends(collection_path_param)],
        )
    return app

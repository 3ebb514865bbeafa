"""`create_app(settings)`: the app factory; its lifespan owns the models, so tests build apps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI

from service import __version__
from service.deps import require_api_key
from service.engine import Models
from service.errors import install_error_handlers
from service.metrics import Metrics, install_metrics
from service.routes import documents, embeddings, operations, search, tokenize
from service.settings import Settings


def create_app(settings: Settings | None = None, *, embedder: Any | None = None) -> FastAPI:
    """Build the service. Pass a loaded `embedder` to skip loading (tests share one model)."""
    settings = settings or Settings()
    metrics = Metrics()
    models = Models(settings, embedder=embedder, on_batch=metrics.observe_batch)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Load in the background: the server accepts connections at once and /health says 503
        # until the models are in memory, which is what orchestrators' readiness probes expect.
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
    install_metrics(app, metrics)

    app.include_router(operations.router)  # /health is open to probes; /info checks the key
    protected = [Depends(require_api_key)]
    for router in (embeddings.router, tokenize.router, documents.router, search.router):
        app.include_router(router, dependencies=protected)
    return app

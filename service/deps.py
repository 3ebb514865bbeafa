"""FastAPI dependencies: the models of this app instance (the API key is `service/auth.py`).

All `async def`: FastAPI runs plain `def` dependencies on its thread pool, a hop per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, Path, Request

from semsearch.index import CollectionBackend
from semsearch.service.collections import DEFAULT, CollectionRegistry, check_store
from semsearch.service.engine import EmbeddingEngine
from semsearch.service.generation import GenerationEngine
from semsearch.service.models import Models
from semsearch.service.retrieval import Retriever
from semsearch.service.settings import Settings
from semsearch.service.workpool import WorkPool

# The path parameter of the routes mounted under `/collections/{collection_name}`.
COLLECTION_PARAM = "collection_name"


async def collection_path_param(
    collection_name: Annotated[str, Path(max_length=64, description="a collection's name")],
) -> None:
    """Declares the path parameter of the routes mounted under a collection (get_collection
    reads it from the request)."""


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def require_store(request: Request) -> None:
    """On every document, search, collection and RAG route: 503 when SEMSEARCH_STORE=none (the
    routes stay published, so a client reads why rather than a 404)."""
    check_store(request.app.state.settings)


async def get_models(request: Request) -> Models:
    return request.app.state.models


async def get_embedding(request: Request) -> EmbeddingEngine:
    return request.app.state.models.require_embedding()


async def get_collection(request: Request) -> AsyncIterator[CollectionBackend]:
    """The default collection, or the one a `/collections/{collection_name}/...` path names,
    leased until the response is sent (a stream included): a drop meanwhile closes it after."""
    name = request.path_params.get(COLLECTION_PARAM)
    models = request.app.state.models
    if name is None or name == DEFAULT:
        yield models.require_collection()
        return
    async with leased(models.require_collections(), name) as collection:
        yield collection


@asynccontextmanager
async def leased(registry: CollectionRegistry, name: str) -> AsyncIterator[CollectionBackend]:
    """`registry.acquire(name)` (opening one from disk reads its snapshot: off the loop), then
    `release`."""
    collection = await asyncio.to_thread(registry.acquire, name)
    try:
        yield collection
    finally:
        registry.release(collection)


async def get_searches(request: Request) -> WorkPool:
    return request.app.state.models.searches


async def get_generation(request: Request) -> GenerationEngine:
    return request.app.state.models.require_generation()


SettingsDep = Annotated[Settings, Depends(get_settings)]
ModelsDep = Annotated[Models, Depends(get_models)]
EmbeddingDep = Annotated[EmbeddingEngine, Depends(get_embedding)]
CollectionDep = Annotated[CollectionBackend, Depends(get_collection, scope="request")]
GenerationDep = Annotated[GenerationEngine, Depends(get_generation)]
SearchPoolDep = Annotated[WorkPool, Depends(get_searches)]


async def get_retriever(
    embedding: EmbeddingDep, collection: CollectionDep, searches: SearchPoolDep
) -> Retriever:
    return Retriever(embedding, collection, searches)


RetrieverDep = Annotated[Retriever, Depends(get_retriever)]

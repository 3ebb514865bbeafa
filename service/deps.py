"""FastAPI dependencies: the models of this app instance, and Bearer authentication.

All `async def`: FastAPI runs plain `def` dependencies on its thread pool, a hop per request.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from index import Collection
from service.engine import EmbeddingEngine
from service.errors import Unauthorized
from service.generation import GenerationEngine
from service.models import Models
from service.settings import Settings


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_models(request: Request) -> Models:
    return request.app.state.models


async def get_embedding(request: Request) -> EmbeddingEngine:
    return request.app.state.models.require_embedding()


async def get_collection(request: Request) -> Collection:
    return request.app.state.models.require_collection()


async def get_generation(request: Request) -> GenerationEngine:
    return request.app.state.models.require_generation()


async def require_api_key(request: Request) -> None:
    """Every route but /health: `Authorization: Bearer <key>` when SEMSEARCH_API_KEY is set."""
    expected = request.app.state.settings.api_key
    if expected is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    # compare_digest: the time taken must not reveal how much of the key matched.
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized("missing or wrong API key: send `Authorization: Bearer <key>`")


SettingsDep = Annotated[Settings, Depends(get_settings)]
ModelsDep = Annotated[Models, Depends(get_models)]
EmbeddingDep = Annotated[EmbeddingEngine, Depends(get_embedding)]
CollectionDep = Annotated[Collection, Depends(get_collection)]
GenerationDep = Annotated[GenerationEngine, Depends(get_generation)]

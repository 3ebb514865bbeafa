"""`/health` and `/ready` (the probes), `/info` and `/metrics`."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from semsearch import __version__
from semsearch.service.deps import ModelsDep, SettingsDep
from semsearch.service.models import Models
from semsearch.service.schemas import NATIVE_ERRORS, Health, Info
from semsearch.service.settings import REQUEST_LIMITS

router = APIRouter(tags=["operations"], responses=NATIVE_ERRORS)


def _state(models: Models) -> Health:
    if models.ready:
        return Health(status="ok")
    if models.load_error is not None:
        # Open to unauthenticated probes: the cause (paths, settings) stays in the log and /info.
        return Health(status="failed", detail="loading the models failed; see the server log")
    return Health(status="loading")


def _answer(body: Health, ok: bool) -> JSONResponse:
    return JSONResponse(body.model_dump(exclude_none=True), status_code=200 if ok else 503)


# HEAD as well: load balancers probe with it. Kept out of the schema (the same answer as GET).
@router.head("/health", include_in_schema=False)
@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health(models: ModelsDep) -> JSONResponse:
    """Liveness: 200 while the process answers, models loading included; 503 only when loading
    failed, which only a restart can retry."""
    body = _state(models)
    return _answer(body, body.status != "failed")


@router.head("/ready", include_in_schema=False)
@router.get("/ready", response_model=Health, responses={503: {"model": Health}})
async def ready(models: ModelsDep) -> JSONResponse:
    """Readiness: 200 once the models are loaded and the collection is open; 503 before, or for
    good when loading failed."""
    body = _state(models)
    return _answer(body, body.status == "ok")


@router.get("/info", response_model=Info)
async def info(models: ModelsDep, settings: SettingsDep) -> Info:
    engine = models.require_embedding()  # a failed start answers 503 with its cause (keyed)
    index: dict = {"store": settings.store}  # SEMSEARCH_STORE; `none` keeps no collection
    if settings.store != "none":
        collection = models.require_collection()
        index |= await asyncio.to_thread(collection.info)  # a count and a directory listing
    return Info(
        index=index,
        version=__version__,
        model_id=engine.model_id,
        encoder=engine.embedder.fingerprint(),
        encoder_choice=getattr(engine.embedder, "backend_choice", None),
        decoder=models.generation.generator.fingerprint() if models.generation else None,
        limits={
            "max_input_length": engine.max_length,
            **{name: getattr(settings, name) for name in REQUEST_LIMITS},
        },
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(request: Request, models: ModelsDep) -> Response:
    registry = request.app.state.metrics
    if models.embedding is not None:
        registry.queue_depth.set(models.embedding.batcher.queue_depth)
    if models.collection is not None:
        registry.index_documents.set(await asyncio.to_thread(models.collection.count))
    return registry.render()

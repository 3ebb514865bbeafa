"""`/health`, `/info` and `/metrics`."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from semsearch import __version__
from semsearch.service.deps import ModelsDep, SettingsDep
from semsearch.service.schemas import NATIVE_ERRORS, Health, Info
from semsearch.service.settings import REQUEST_LIMITS

router = APIRouter(tags=["operations"], responses=NATIVE_ERRORS)


# HEAD as well: load balancers probe with it. Kept out of the schema (the same answer as GET).
@router.head("/health", include_in_schema=False)
@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health(models: ModelsDep) -> JSONResponse:
    if models.ready:
        return JSONResponse(Health(status="ok").model_dump(exclude_none=True))
    if models.load_error is not None:
        # Open to unauthenticated probes: the cause (paths, settings) stays in the log and /info.
        body = Health(status="failed", detail="loading the models failed; see the server log")
    else:
        body = Health(status="loading")
    return JSONResponse(body.model_dump(exclude_none=True), status_code=503)


@router.get("/info", response_model=Info)
async def info(models: ModelsDep, settings: SettingsDep) -> Info:
    engine = models.require_embedding()  # a failed start answers 503 with its cause (keyed)
    collection = models.require_collection()
    return Info(
        index=await asyncio.to_thread(collection.info),  # a count and a directory listing
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

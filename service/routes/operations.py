"""`/health`, `/info` and `/metrics`."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from service import __version__
from service.deps import ModelsDep, SettingsDep, require_api_key
from service.schemas import Health, Info

router = APIRouter(tags=["operations"])


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health(models: ModelsDep) -> JSONResponse:
    if models.ready:
        return JSONResponse(Health(status="ok").model_dump(exclude_none=True))
    if models.load_error is not None:
        body = Health(status="failed", detail=str(models.load_error))
    else:
        body = Health(status="loading")
    return JSONResponse(body.model_dump(exclude_none=True), status_code=503)


@router.get("/info", response_model=Info, dependencies=[Depends(require_api_key)])
async def info(models: ModelsDep, settings: SettingsDep) -> Info:
    engine = models.require_embedding()
    collection = models.require_collection()
    return Info(
        index=collection.info(),
        version=__version__,
        model_id=engine.model_id,
        encoder=engine.embedder.fingerprint(),
        decoder=models.generation.generator.fingerprint() if models.generation else None,
        limits={
            "max_client_batch_size": settings.max_client_batch_size,
            "max_input_length": engine.max_length,
            "max_batch_tokens": settings.max_batch_tokens,
        },
    )


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[Depends(require_api_key)],
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(request: Request, models: ModelsDep) -> Response:
    registry = request.app.state.metrics
    if models.embedding is not None:
        registry.queue_depth.set(models.embedding.batcher.queue_depth)
    if models.collection is not None:
        registry.index_documents.set(models.collection.count())
    return registry.render()

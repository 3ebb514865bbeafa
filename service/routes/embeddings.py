"""`/embed` (TEI's shape) and `/v1/embeddings` (OpenAI's shape)."""

from __future__ import annotations

import base64

import numpy as np
from fastapi import APIRouter, Request

from semsearch.service.deps import EmbeddingDep
from semsearch.service.engine import check_input_count
from semsearch.service.openai_schemas import (
    OpenAIEmbedding,
    OpenAIEmbeddingRequest,
    OpenAIEmbeddingResponse,
    OpenAIUsage,
)
from semsearch.service.openai_unsupported import refuse_other_dimensions
from semsearch.service.schemas import NATIVE_ERRORS, OPENAI_ERRORS, EmbedDetails, EmbedRequest
from semsearch.service.streaming import until_disconnected
from semsearch.service.token_inputs import prompt_text

router = APIRouter(tags=["embeddings"], responses=NATIVE_ERRORS)


@router.post("/embed", response_model=list[list[float]] | EmbedDetails)
async def embed(
    body: EmbedRequest, request: Request, engine: EmbeddingDep
) -> list[list[float]] | EmbedDetails:
    inputs = body.items()
    check_input_count(len(inputs), engine.settings.max_client_batch_size, "inputs")
    prompt = prompt_text(engine.embedder.prompts, body.prompt_name)
    work = engine.embed(
        inputs,
        normalize=body.normalize,
        truncate=body.truncate,
        truncation_side=body.truncation_side(),
        prompt=prompt,
    )
    # A client that leaves takes its queued work with it (the batcher skips cancelled requests).
    result = await until_disconnected(request, work)
    if body.details:  # opt-in: TEI's clients parse the bare array
        return EmbedDetails(
            embeddings=result.vectors.tolist(),
            n_tokens=result.token_counts,
            truncated=result.truncated,
        )
    return result.vectors.tolist()


@router.post("/v1/embeddings", response_model=OpenAIEmbeddingResponse, responses=OPENAI_ERRORS)
async def openai_embeddings(
    body: OpenAIEmbeddingRequest, request: Request, engine: EmbeddingDep
) -> OpenAIEmbeddingResponse:
    # OpenAI truncates nothing silently either: too long is an error, as with `truncate: false`.
    refuse_other_dimensions(body.dimensions, engine.embedder.dim)
    texts = body.texts()
    check_input_count(len(texts), engine.settings.max_client_batch_size, "input")
    result = await until_disconnected(request, engine.embed(texts, normalize=True, truncate=False))
    data = []
    for i, vector in enumerate(result.vectors):
        if body.encoding_format == "base64":
            encoded: list[float] | str = base64.b64encode(
                np.ascontiguousarray(vector, dtype="<f4").tobytes()
            ).decode("ascii")
        else:
            encoded = vector.tolist()
        data.append(OpenAIEmbedding(index=i, embedding=encoded))
    tokens = sum(result.token_counts)
    return OpenAIEmbeddingResponse(
        data=data,
        model=engine.model_id,
        usage=OpenAIUsage(prompt_tokens=tokens, total_tokens=tokens),
    )

"""`/v1/models` (OpenAI's shape): the models this server answers with, and their context."""

from __future__ import annotations

from fastapi import APIRouter

from semsearch.service.deps import ModelsDep
from semsearch.service.errors import NotFound
from semsearch.service.models import Models
from semsearch.service.openai_schemas import ModelCard, ModelList
from semsearch.service.schemas import OPENAI_ERRORS

router = APIRouter(tags=["operations"], responses=OPENAI_ERRORS)


def model_cards(models: Models) -> list[ModelCard]:
    """The encoder (once loaded: 503 before), and the decoder when it is loaded."""
    embedding = models.require_embedding()
    cards = [
        ModelCard(id=embedding.model_id, kind="embedding", context_length=embedding.max_length)
    ]
    if models.generation is not None:
        generation = models.generation
        cards.append(
            ModelCard(
                id=generation.model_id, kind="generation", context_length=generation.context_length
            )
        )
    return cards


@router.get("/v1/models", response_model=ModelList)
async def list_models(models: ModelsDep) -> ModelList:
    return ModelList(data=model_cards(models))


@router.get("/v1/models/{model_id}", response_model=ModelCard)
async def get_model(model_id: str, models: ModelsDep) -> ModelCard:
    for card in model_cards(models):
        if card.id == model_id:
            return card
    raise NotFound(f"no model {model_id[:200]!r} here; GET /v1/models lists them", param="model")

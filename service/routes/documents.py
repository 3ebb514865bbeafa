"""`/documents`: upsert, get and delete; the collection is the source of truth."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from service.deps import CollectionDep, EmbeddingDep
from service.engine import check_input_count
from service.errors import NotFound
from service.schemas import DeleteResponse, DocumentOut, UpsertRequest, UpsertResponse

router = APIRouter(prefix="/documents", tags=["documents"])


@router.post("", response_model=UpsertResponse, response_model_exclude_none=True)
async def upsert_documents(
    body: UpsertRequest, engine: EmbeddingDep, collection: CollectionDep
) -> UpsertResponse:
    check_input_count(len(body.documents), engine.settings.max_documents_per_request, "documents")
    docs = [d.model_dump() for d in body.documents]
    # Embedding first: a request that fails here has written nothing.
    vectors = await engine.embed_many([d["text"] for d in docs])
    ids = await asyncio.to_thread(collection.upsert, docs, vectors)
    generated = any(d.id is None for d in body.documents)
    return UpsertResponse(upserted=len(ids), ids=ids if generated else None)


@router.get("/{doc_id}", response_model=DocumentOut)
async def get_document(doc_id: str, collection: CollectionDep) -> DocumentOut:
    doc = await asyncio.to_thread(collection.get, doc_id)
    if doc is None:
        raise NotFound(f"no document with id {doc_id!r}")
    return DocumentOut(id=doc.id, text=doc.text, metadata=doc.metadata)


@router.delete("/{doc_id}", response_model=DeleteResponse)
async def delete_document(doc_id: str, collection: CollectionDep) -> DeleteResponse:
    if await asyncio.to_thread(collection.delete, [doc_id]) == 0:
        raise NotFound(f"no document with id {doc_id!r}")
    return DeleteResponse(deleted=doc_id)

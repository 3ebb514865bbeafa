"""`/documents`: upsert, get and delete; the collection is the source of truth."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

from semsearch.index import Doc
from semsearch.index.ids import check_user_id
from semsearch.service.deps import CollectionDep, EmbeddingDep
from semsearch.service.engine import check_input_count, check_text_lengths
from semsearch.service.errors import NotFound
from semsearch.service.schemas import (
    NATIVE_ERRORS,
    DeleteResponse,
    DocumentOut,
    UpsertRequest,
    UpsertResponse,
)
from semsearch.service.streaming import until_disconnected

router = APIRouter(prefix="/documents", tags=["documents"], responses=NATIVE_ERRORS)


@router.post("", response_model=UpsertResponse, response_model_exclude_none=True)
async def upsert_documents(
    body: UpsertRequest, request: Request, engine: EmbeddingDep, collection: CollectionDep
) -> UpsertResponse:
    settings = engine.settings
    check_input_count(len(body.documents), settings.max_documents_per_request, "documents")
    texts = [d.text for d in body.documents]
    check_text_lengths(
        texts, settings.max_document_chars, "SEMSEARCH_MAX_DOCUMENT_CHARS", "document"
    )
    for d in body.documents:
        if d.id is not None:
            check_user_id(d.id)  # no ids reserved for chunks, no control characters
    # Every document is checked (metadata size, depth, finite numbers) before any is embedded:
    # a request that fails has cost little and written nothing.
    docs = await asyncio.to_thread(
        lambda: [Doc.coerce(d.model_dump(), collection.limits) for d in body.documents]
    )
    vectors = await until_disconnected(request, engine.embed_many(texts))
    ids = await asyncio.to_thread(collection.upsert, docs, vectors)
    generated = any(d.id is None for d in body.documents)
    return UpsertResponse(upserted=len(ids), ids=ids if generated else None)


# `:path`: the id is the rest of the path, "/" included (the folder reader makes `sub/x.txt`).
@router.get("/{doc_id:path}", response_model=DocumentOut)
async def get_document(doc_id: str, collection: CollectionDep) -> DocumentOut:
    doc = await asyncio.to_thread(collection.get, doc_id)
    if doc is None:
        raise NotFound(f"no document with id {doc_id[:200]!r}")
    return DocumentOut(id=doc.id, text=doc.text, metadata=doc.metadata)


@router.delete("/{doc_id:path}", response_model=DeleteResponse)
async def delete_document(doc_id: str, collection: CollectionDep) -> DeleteResponse:
    # An id that is not there is a 404 at once, without waiting for the writer lock.
    if await asyncio.to_thread(collection.get, doc_id) is None or (
        await asyncio.to_thread(collection.delete, [doc_id]) == 0
    ):
        raise NotFound(f"no document with id {doc_id[:200]!r}")
    return DeleteResponse(deleted=doc_id)

"""`/documents`: upsert, get, scroll, count and delete; the collection is the source of truth."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from semsearch.index import Doc
from semsearch.index.ids import check_user_id
from semsearch.service.chunking import Chunking, Plan, plan_units, whole_document
from semsearch.service.deps import CollectionDep, EmbeddingDep
from semsearch.service.engine import check_input_count, check_text_lengths
from semsearch.service.errors import NotFound, PayloadTooLarge, ValidationFailed
from semsearch.service.schemas import (
    NATIVE_ERRORS,
    CountResponse,
    DeleteManyRequest,
    DeleteManyResponse,
    DeleteResponse,
    DocumentOut,
    DocumentPage,
    StoredDocument,
    UpsertRequest,
    UpsertResponse,
)
from semsearch.service.streaming import until_disconnected

router = APIRouter(tags=["documents"], responses=NATIVE_ERRORS)

# A filter in a query string: JSON, URL-encoded (`?filter=%7B%22lang%22%3A%22en%22%7D`).
FilterParam = Annotated[
    str | None, Query(max_length=65_536, description="a search filter as JSON (URL-encoded)")
]


def _filter_param(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise ValidationFailed("filter: not valid JSON", param="filter") from None
    if not isinstance(value, dict):
        raise ValidationFailed("filter: must be a JSON object", param="filter")
    return value


def _cursor(last_id: str) -> str:
    """An opaque cursor: the last id of a page, base64url (ids may hold any character)."""
    return base64.urlsafe_b64encode(last_id.encode("utf-8")).decode("ascii")


def _after(cursor: str | None) -> str:
    if cursor is None:
        return ""
    try:
        return base64.b64decode(cursor.encode("ascii"), altchars=b"-_", validate=True).decode()
    except (ValueError, binascii.Error, UnicodeError):
        raise ValidationFailed(
            "cursor: not a cursor this server gave (pass `next_cursor` as it came)",
            param="cursor",
        ) from None


@router.post("/documents", response_model=UpsertResponse, response_model_exclude_none=True)
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
    # Every document is checked (metadata size, depth, finite numbers) and cut into the chunks it
    # is stored as before any is embedded: a request that fails has cost little, written nothing.
    given = body.chunking.model_dump() if body.chunking else None
    chunking = Chunking(**(given or await asyncio.to_thread(collection.chunking)))

    def prepare() -> tuple[list[Doc], Plan]:
        docs = [Doc.coerce(d.model_dump(), collection.limits) for d in body.documents]
        # An id sent twice: the last version wins, as if written one by one (its chunks too).
        last = list({d.id: d for d in docs}.values())
        return docs, plan_units(last, engine.embedder.tokenizer, engine.max_length - 2, chunking)

    docs, plan = await asyncio.to_thread(prepare)
    if len(plan.units) > settings.max_chunks_per_request:
        raise PayloadTooLarge(
            f"the documents make {len(plan.units)} chunks, more than the limit of "
            f"{settings.max_chunks_per_request} (SEMSEARCH_MAX_CHUNKS_PER_REQUEST); split it"
        )
    vectors = await until_disconnected(request, engine.embed_many([u.text for u in plan.units]))
    ids = [d.id for d in docs]
    # Each document's earlier form goes in the same transaction: its chunks, or its whole self.
    await asyncio.to_thread(collection.upsert, plan.units, vectors, list(dict.fromkeys(ids)))
    generated = any(d.id is None for d in body.documents)
    return UpsertResponse(
        upserted=len(docs),
        ids=ids if generated else None,
        chunks=len(plan.units) if plan.chunked else None,
    )


@router.get("/documents", response_model=DocumentPage)
async def scroll_documents(
    collection: CollectionDep,
    request: Request,
    limit: Annotated[int, Query(ge=1, description="at most SEMSEARCH_MAX_PAGE_SIZE")] = 100,
    cursor: Annotated[str | None, Query(max_length=4096)] = None,
    filter: FilterParam = None,
) -> DocumentPage:
    """Every document once, in id order, a page at a time (keyset pagination: writes between
    pages neither repeat nor skip a document that was stored throughout)."""
    maximum = request.app.state.settings.max_page_size
    if limit > maximum:
        raise ValidationFailed(
            f"limit={limit} is more than this server's maximum of {maximum} "
            "(SEMSEARCH_MAX_PAGE_SIZE)",
            param="limit",
        )
    flt, after = _filter_param(filter), _after(cursor)
    docs = await asyncio.to_thread(collection.scroll, after, limit + 1, flt)
    page = docs[:limit]
    return DocumentPage(
        documents=[DocumentOut(id=d.id, text=d.text, metadata=d.metadata) for d in page],
        next_cursor=_cursor(page[-1].id) if len(docs) > limit else None,
    )


@router.get("/count", response_model=CountResponse)
async def count_documents(collection: CollectionDep, filter: FilterParam = None) -> CountResponse:
    flt = _filter_param(filter)
    return CountResponse(count=await asyncio.to_thread(collection.count, flt))


@router.post("/documents/delete", response_model=DeleteManyResponse)
async def delete_documents(
    body: DeleteManyRequest, collection: CollectionDep
) -> DeleteManyResponse:
    """Delete by ids or by filter, in one transaction; how many were deleted (absent ids are
    not counted)."""
    if (body.ids is None) == (body.filter is None):
        raise ValidationFailed("give exactly one of `ids` and `filter`")
    if body.ids is not None:
        deleted = await asyncio.to_thread(collection.delete, body.ids, True)
    else:
        deleted = await asyncio.to_thread(collection.delete_where, body.filter)
    return DeleteManyResponse(deleted=deleted)


# `:path`: the id is the rest of the path, "/" included (the folder reader makes `sub/x.txt`).
@router.get("/documents/{doc_id:path}", response_model=StoredDocument)
async def get_document(doc_id: str, collection: CollectionDep) -> StoredDocument:
    """The document as it was sent: stored whole, or put back together from its chunks."""

    def find() -> tuple[Doc | None, int]:
        doc = collection.get(doc_id)
        if doc is not None:
            return doc, 0
        chunks = collection.chunks_of(doc_id)
        return (whole_document(doc_id, chunks), len(chunks)) if chunks else (None, 0)

    doc, chunks = await asyncio.to_thread(find)
    if doc is None:
        raise NotFound(f"no document with id {doc_id[:200]!r}")
    return StoredDocument(id=doc.id, text=doc.text, metadata=doc.metadata, chunks=chunks)


@router.delete("/documents/{doc_id:path}", response_model=DeleteResponse)
async def delete_document(doc_id: str, collection: CollectionDep) -> DeleteResponse:
    """The document and its chunks."""

    def stored() -> bool:
        return collection.get(doc_id) is not None or bool(collection.chunks_of(doc_id))

    # An id that is not there is a 404 at once, without waiting for the writer lock.
    if not await asyncio.to_thread(stored) or (
        await asyncio.to_thread(collection.delete, [doc_id], True) == 0
    ):
        raise NotFound(f"no document with id {doc_id[:200]!r}")
    return DeleteResponse(deleted=doc_id)

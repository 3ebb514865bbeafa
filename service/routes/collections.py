"""`/collections`: create, list, describe and drop named collections. Their documents and
searches are the routes of `documents`, `search` and `rag`, mounted again under
`/collections/{collection_name}` (app.py)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from semsearch.index.config import normalize_type
from semsearch.service.chunking import Chunking, check_chunking
from semsearch.service.deps import ModelsDep, leased
from semsearch.service.errors import ValidationFailed
from semsearch.service.schemas import (
    NATIVE_ERRORS,
    CollectionCreate,
    CollectionInfo,
    CollectionList,
    DeletedSnapshot,
    DroppedCollection,
    FieldIndex,
    FieldIndexList,
    FieldIndexRequest,
    SnapshotInfo,
    SnapshotList,
)
from semsearch.service.snapshots import Snapshots

router = APIRouter(prefix="/collections", tags=["collections"], responses=NATIVE_ERRORS)


@router.post("", response_model=CollectionInfo, status_code=201)
async def create_collection(body: CollectionCreate, models: ModelsDep) -> CollectionInfo:
    registry = models.require_collections()
    index_type = None
    if body.index_type is not None:
        try:
            index_type = normalize_type(body.index_type)
        except ValueError as exc:
            raise ValidationFailed(str(exc), param="index_type") from None
    options = body.index_options.model_dump(exclude_none=True) if body.index_options else None
    chunking = None
    if body.chunking is not None:
        chunking = Chunking(**body.chunking.model_dump())
        check_chunking(chunking, models.require_embedding().max_length - 2)
    collection = await asyncio.to_thread(registry.create, body.name, index_type, options)
    try:
        if chunking is not None:
            await asyncio.to_thread(collection.set_chunking, chunking.tokens, chunking.overlap)
        info = await asyncio.to_thread(collection.info)
    finally:
        registry.release(collection)
    return CollectionInfo(name=body.name, loaded=True, **info)


@router.get("", response_model=CollectionList)
async def list_collections(models: ModelsDep) -> CollectionList:
    described = await asyncio.to_thread(models.require_collections().describe_all)
    return CollectionList(collections=[CollectionInfo(**d) for d in described])


@router.get("/{name}", response_model=CollectionInfo)
async def describe_collection(name: str, models: ModelsDep) -> CollectionInfo:
    return await _info(models, name)


@router.delete("/{name}", response_model=DroppedCollection)
async def drop_collection(name: str, models: ModelsDep) -> DroppedCollection:
    await asyncio.to_thread(models.require_collections().drop, name)
    return DroppedCollection(dropped=name)


@router.post("/{name}/snapshots", response_model=SnapshotInfo, status_code=201)
async def take_snapshot(name: str, models: ModelsDep) -> SnapshotInfo:
    """A consistent copy of the collection while it is written to (`semsearch index restore`
    puts one back)."""
    async with leased(models.require_collections(), name) as collection:
        directory = getattr(collection, "directory", None)
        if directory is None:
            raise ValidationFailed(
                "snapshots here are of local collections; a Qdrant collection has its own "
                "snapshot API (SEMSEARCH_STORE=qdrant)"
            )
        snapshot = await asyncio.to_thread(_snapshots(models).take, name, directory)
    return SnapshotInfo(**vars(snapshot))


@router.get("/{name}/snapshots", response_model=SnapshotList)
async def list_snapshots(name: str, models: ModelsDep) -> SnapshotList:
    async with leased(models.require_collections(), name):  # 404 for an unknown one
        pass
    found = await asyncio.to_thread(_snapshots(models).list, name)
    return SnapshotList(snapshots=[SnapshotInfo(**vars(s)) for s in found])


@router.delete("/{name}/snapshots/{snapshot}", response_model=DeletedSnapshot)
async def delete_snapshot(name: str, snapshot: str, models: ModelsDep) -> DeletedSnapshot:
    await asyncio.to_thread(_snapshots(models).delete, name, snapshot)
    return DeletedSnapshot(deleted=snapshot)


def _snapshots(models: ModelsDep) -> Snapshots:
    return Snapshots(models.settings)


@router.post("/{name}/field-indexes", response_model=FieldIndex, status_code=201)
async def index_field(name: str, body: FieldIndexRequest, models: ModelsDep) -> FieldIndex:
    """An SQLite expression index on a metadata field, so a selective filter on it stays fast
    on millions of documents; built before the answer (writes wait meanwhile)."""
    async with leased(models.require_collections(), name) as collection:
        created = await asyncio.to_thread(collection.index_field, body.field)
    return FieldIndex(field=body.field, created=created)


@router.get("/{name}/field-indexes", response_model=FieldIndexList)
async def list_field_indexes(name: str, models: ModelsDep) -> FieldIndexList:
    async with leased(models.require_collections(), name) as collection:
        return FieldIndexList(fields=await asyncio.to_thread(collection.indexed_fields))


async def _info(models: ModelsDep, name: str) -> CollectionInfo:
    async with leased(models.require_collections(), name) as collection:
        return CollectionInfo(name=name, loaded=True, **await asyncio.to_thread(collection.info))

"""The collection interface the service and the indexer program against, and the factory that
opens one on either store: "local" (`Collection`: SQLite + FAISS in a directory) or "qdrant"
(`QdrantCollection`: a Qdrant server, or qdrant-client's in-process mode).

`CollectionBackend` holds exactly what service/ and index/ingest/ call on an open collection:

- writes: `upsert(docs, vectors, families)`, `delete(ids, families)`, `delete_where(filter)`
- reads: `get(id)`, `search(vector, k, filter, score_threshold, *, text, mode, fusion)`,
  `count(filter)`, `scroll(after, limit, filter)`, `families(parents)`, `chunks_of(parent)`,
  `iter_ids(chunk)`, `info()`
- declarations: `chunking()`, `set_chunking(tokens, overlap)`, `index_field(field)`,
  `indexed_fields()`
- `limits` (documents are checked against them before a write), `close()`, `with` support.

Local-only, and so not here: `directory` (file snapshots), `wait_idle`, `save`, `refresh`, and
reindexing (index/ingest/pipeline.py reads the SQLite store directly).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np

from semsearch.index.config import IndexConfig
from semsearch.index.documents import Doc, Hit
from semsearch.index.errors import InvalidArgument
from semsearch.index.fusion import Fusion
from semsearch.index.limits import Limits

STORES = ("local", "qdrant")


@runtime_checkable
class CollectionBackend(Protocol):
    """A collection of documents and their vectors; `Collection` documents the semantics."""

    @property
    def limits(self) -> Limits: ...

    def upsert(
        self,
        docs: Sequence[Doc | dict[str, Any]],
        vectors: np.ndarray,
        families: Sequence[str] = (),
    ) -> list[str]: ...

    def delete(self, ids: Iterable[str], families: bool = False) -> int: ...

    def delete_where(self, filter: dict[str, Any]) -> int: ...

    def get(self, doc_id: str) -> Doc | None: ...

    def search(
        self,
        vector: np.ndarray | Sequence[float] | None,
        k: int = 10,
        filter: dict[str, Any] | None = None,
        score_threshold: float | None = None,
        *,
        text: str | None = None,
        mode: str = "dense",
        fusion: Fusion | None = None,
    ) -> list[Hit]: ...

    def count(self, filter: dict[str, Any] | None = None) -> int: ...

    def scroll(
        self, after: str = "", limit: int = 100, filter: dict[str, Any] | None = None
    ) -> list[Doc]: ...

    def families(self, parents: Sequence[str]) -> dict[str, Doc]: ...

    def chunks_of(self, parent: str) -> list[Doc]: ...

    def iter_ids(self, chunk: int = 4_096) -> Iterable[list[str]]: ...

    def info(self) -> dict[str, Any]: ...

    def chunking(self) -> dict[str, int]: ...

    def set_chunking(self, tokens: int | None, overlap: int | None) -> None: ...

    def index_field(self, field: str) -> bool: ...

    def indexed_fields(self) -> list[str]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


def _refuse(store: str, given: dict[str, Any]) -> None:
    extra = sorted(name for name, value in given.items() if value)
    if extra:
        raise InvalidArgument(f"{', '.join(extra)}: not options of the {store} store")


def open_backend(
    store: str,
    directory: str | Path | None = None,
    *,
    dim: int | None = None,
    encoder_fingerprint: dict[str, Any] | None = None,
    read_only: bool = False,
    limits: Limits | None = None,
    # the local store's
    index_type: str | None = None,
    config: IndexConfig | None = None,
    index_options: dict[str, Any] | None = None,
    background: bool = True,
    # the Qdrant store's
    collection: str | None = None,
    url: str | None = None,
    api_key: str | None = None,
    location: str | None = None,
    path: str | Path | None = None,
    shard_number: int | None = None,
    replication_factor: int | None = None,
    timeout_s: float | None = None,
) -> CollectionBackend:
    """Open (or create) a collection on `store`.

    "local": `Collection.open(directory, dim, encoder_fingerprint, index_type, config, read_only,
    index_options, limits, background)`. "qdrant": `QdrantCollection.open(collection, ...)` on a
    server (`url`, `api_key`) or in-process (`location=":memory:"`, or `path` a directory), with
    `shard_number` and `replication_factor` for a new collection and `timeout_s` per request;
    `background` does not apply to it and is ignored. Options of the other store are refused
    (InvalidArgument), so a setting never goes silently unused.
    """
    if store == "local":
        _refuse(
            store,
            {
                "collection": collection,
                "url": url,
                "api_key": api_key,
                "location": location,
                "path": path,
                "shard_number": shard_number,
                "replication_factor": replication_factor,
                "timeout_s": timeout_s,
            },
        )
        if directory is None:
            raise InvalidArgument("the local store needs a directory")
        from semsearch.index.collection import Collection

        return Collection.open(
            directory,
            dim=dim,
            encoder_fingerprint=encoder_fingerprint,
            index_type=index_type,
            config=config,
            read_only=read_only,
            index_options=index_options,
            limits=limits,
            background=background,
        )
    if store == "qdrant":
        _refuse(
            store,
            {
                "directory": directory,
                "index_type": index_type,
                "config": config,
                "index_options": index_options,
            },
        )
        if collection is None:
            raise InvalidArgument("the qdrant store needs a collection name")
        from semsearch.index.qdrant import QdrantCollection

        return QdrantCollection.open(
            collection,
            url=url,
            api_key=api_key,
            location=location,
            path=path,
            dim=dim,
            encoder_fingerprint=encoder_fingerprint,
            read_only=read_only,
            limits=limits,
            shard_number=shard_number,
            replication_factor=replication_factor,
            timeout_s=timeout_s,
        )
    raise InvalidArgument(f"store must be one of {', '.join(STORES)}, got {store!r}")

"""A collection in Qdrant, behind the same interface as the local store (index/backend.py).

One point per document, id `uuid5(id)` (index/qdrant/ids.py), its payload laid out so that
filters match exactly what they match locally (index/qdrant/payload.py, filters.py); plus one
settings point (index/qdrant/manifest.py) that every query leaves out. The collection is created
(cosine, the encoder's dimension, the requested shards and replicas) when opened with `dim`, else
by the first upsert.

Writes are acknowledged once Qdrant has applied them (`wait=True`), a batch of points per
request. Where Qdrant cannot do what the local store does:

- No transactions. An upsert that replaces a document's earlier forms (`families`) writes the new
  points, then deletes the stale ones in the request of the last batch: a reader in between may
  see both. Deletes pick their points, then delete exactly those; the count is of those.
- Pages of `scroll` come in point id order, not id order (index/qdrant/listing.py).
- Dense search only: keyword and hybrid search need the local store's BM25 index.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from semsearch.index.documents import Doc, Hit
from semsearch.index.errors import DimensionMismatch, FilterError, InvalidArgument, NotFound
from semsearch.index.fusion import MODES, Fusion
from semsearch.index.limits import Limits
from semsearch.index.qdrant import payload as layout
from semsearch.index.qdrant.client import Connection, connect
from semsearch.index.qdrant.declarations import Declarations
from semsearch.index.qdrant.filters import family_in, to_qdrant
from semsearch.index.qdrant.ids import point_id
from semsearch.index.qdrant.listing import Listing, pages, usable_ids
from semsearch.index.qdrant.manifest import FORMAT_VERSION, Manifest
from semsearch.index.search import unit_rows

_REQUEST_BYTES = 8 << 20  # an upsert request's estimated size; Qdrant's default limit is 32 MiB


class QdrantCollection(Listing, Declarations):
    def __init__(
        self,
        conn: Connection,
        name: str,
        limits: Limits,
        read_only: bool,
        wanted: Manifest,
        shard_number: int | None = None,
        replication_factor: int | None = None,
        batch_size: int = 256,
    ) -> None:
        super().__init__(conn, name, limits, read_only, wanted, shard_number, replication_factor)
        self._batch_size = batch_size
        self._closed = False

    @classmethod
    def open(
        cls,
        collection: str,
        *,
        url: str | None = None,
        api_key: str | None = None,
        location: str | None = None,
        path: str | Path | None = None,
        client: QdrantClient | None = None,
        dim: int | None = None,
        encoder_fingerprint: dict[str, Any] | None = None,
        read_only: bool = False,
        limits: Limits | None = None,
        shard_number: int | None = None,
        replication_factor: int | None = None,
        timeout_s: float | None = None,
        batch_size: int = 256,
    ) -> QdrantCollection:
        """Open (or, unless `read_only`, create) the Qdrant collection `collection`, on a server
        (`url`, `api_key`), in-process (`location=":memory:"`, or `path` a directory) or through
        an open `client` (left open by `close`).

        `dim` and `encoder_fingerprint`, when given, must match what the collection was built
        with (DimensionMismatch / FingerprintMismatch); a new one records them and is created now
        when `dim` is known, else by the first upsert, with `shard_number` and
        `replication_factor`. NotFound: `read_only` and no such collection. `batch_size`: points
        per upsert request.
        """
        if not isinstance(collection, str) or not collection:
            raise InvalidArgument(f"a Qdrant collection name is needed, got {collection!r}")
        if batch_size < 1:
            raise InvalidArgument(f"batch_size must be >= 1, got {batch_size}")
        conn = connect(url, api_key, location, path, client, timeout_s)
        wanted = Manifest(dim=dim, encoder_fingerprint=encoder_fingerprint)
        col = cls(
            conn,
            collection,
            limits or Limits(),
            read_only,
            wanted,
            shard_number,
            replication_factor,
            batch_size,
        )
        try:
            if col._exists():
                col._load()
            elif read_only:
                raise NotFound(f"no Qdrant collection {col.where}")
            elif dim is not None:
                col._create(dim)
        except BaseException:
            conn.close()
            raise
        return col

    # -- writes --------------------------------------------------------------------------------

    def upsert(
        self,
        docs: Sequence[Doc | dict[str, Any]],
        vectors: np.ndarray,
        families: Sequence[str] = (),
    ) -> list[str]:
        """Insert or replace documents with their vectors (n, dim); returns the ids in order.
        `families`: documents whose stored forms (the id itself, its chunks `<id>#chunk-<n>`) not
        written now are deleted, after the new points are written."""
        items = [Doc.coerce(d, self.limits) for d in docs]
        vectors = unit_rows(vectors)
        if len(items) != len(vectors):
            raise InvalidArgument(f"{len(items)} documents but {len(vectors)} vectors")
        ids = [d.id for d in items]
        if not items:
            return ids
        last = {d.id: i for i, d in enumerate(items)}  # the last version of a repeated id wins
        keep = sorted(last.values())
        items, vectors = [items[i] for i in keep], vectors[keep]
        self._check_writable()
        payloads = [layout.to_payload(d) for d in items]  # refused before anything is written
        self._ensure_dim(vectors.shape[1])
        points = [point_id(d.id) for d in items]
        stale = usable_ids(families)
        requests = list(self._requests(items, vectors.shape[1]))
        for n, (start, end) in enumerate(requests):
            batch = models.Batch(
                ids=points[start:end],
                vectors=vectors[start:end].tolist(),
                payloads=payloads[start:end],
            )
            ops: list[Any] = [models.UpsertOperation(upsert=models.PointsBatch(batch=batch))]
            if stale and n == len(requests) - 1:
                gone = models.Filter(
                    must=[family_in(stale)], must_not=[models.HasIdCondition(has_id=points)]
                )
                ops.append(models.DeleteOperation(delete=models.FilterSelector(filter=gone)))
            self._q("batch_update_points", update_operations=ops, wait=True)
        return ids

    def _ensure_dim(self, dim: int) -> None:
        if not self._ready():
            self._create(dim)
        if dim != self._dim:
            raise DimensionMismatch(
                f"vectors have dimension {dim}, the Qdrant collection {self.where} has "
                f"{self._dim}; use the encoder it was built with"
            )

    def _requests(self, items: list[Doc], dim: int) -> Iterator[tuple[int, int]]:
        """[start, end) of each upsert request: `batch_size` points, about _REQUEST_BYTES."""
        start, size = 0, 0
        for i, doc in enumerate(items):
            cost = 12 * dim + 4 * len(doc.text) + 3 * len(json.dumps(doc.metadata))
            if i > start and (i - start >= self._batch_size or size + cost > _REQUEST_BYTES):
                yield start, i
                start, size = i, 0
            size += cost
        yield start, len(items)

    def delete(self, ids: Iterable[str], families: bool = False) -> int:
        """Delete these ids (`families`: and their chunks); returns how many were stored."""
        wanted = usable_ids(ids)
        self._check_writable()
        if not wanted or not self._ready():
            return 0
        if families:
            found = [p for part in pages(wanted) for p in self._point_ids(family_in(part))]
        else:
            found = [str(r.id) for r in self._retrieve(wanted, [])]
        return self._delete_points(found)

    def delete_where(self, filter: dict[str, Any]) -> int:
        """Delete every document matching `filter` (the search filter language); returns how
        many. An empty filter is refused: delete by ids to delete everything on purpose."""
        condition = to_qdrant(filter, self.limits.max_filter_conditions)
        if condition is None:
            raise FilterError("delete by filter needs a filter with at least one condition")
        self._check_writable()
        if not self._ready():
            return 0
        return self._delete_points(self._point_ids(condition))

    def _delete_points(self, points: list[str]) -> int:
        for part in pages(points):
            self._q("delete", points_selector=models.PointIdsList(points=list(part)), wait=True)
        return len(points)

    # -- search --------------------------------------------------------------------------------

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
    ) -> list[Hit]:
        """The `k` documents most similar (cosine) to `vector` that match `filter`, best first;
        with `score_threshold`, only those scoring at least that. `text` and `fusion` serve the
        keyword and hybrid modes, which need the local store: InvalidArgument here."""
        if not isinstance(k, int) or k < 1:
            raise InvalidArgument(f"k must be a positive integer, got {k!r}")
        flt = self._where(filter)  # validated before anything else
        if mode not in MODES:
            raise InvalidArgument(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if mode != "dense":
            raise InvalidArgument(
                f"a {mode} search needs the local store (its BM25 keyword index); the Qdrant "
                "store searches by dense vectors only: use mode dense"
            )
        query = unit_rows(vector)
        if len(query) != 1:
            raise InvalidArgument(f"search takes one vector, got {len(query)}")
        if not self._ready():
            return []
        if query.shape[1] != self._dim:
            raise DimensionMismatch(
                f"query has dimension {query.shape[1]}, the collection has {self._dim}"
            )
        found = self._q(
            "query_points",
            query=query[0].tolist(),
            query_filter=flt,
            limit=k,
            with_payload=layout.READ_BACK,
        ).points
        hits = []
        for point in found:
            doc = layout.to_doc(point.payload)
            if doc is not None and (score_threshold is None or point.score >= score_threshold):
                hits.append(Hit(doc.id, float(point.score), doc.text, doc.metadata))
        return hits

    # -- the collection ------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """`Collection.info`'s keys, as far as they apply, and where the collection is."""
        ready = self._ready()
        manifest = self._manifest()
        params = self._q("get_collection").config.params if ready else None
        return {
            "backend": "qdrant",
            "count": self.count(),
            "dim": self._dim,
            "metric": "cosine",
            "index_type": "qdrant",
            "factory": None,
            "tombstones": 0,
            "keyword_count": None,
            "chunking": dict(manifest.chunking),
            "encoder_fingerprint": manifest.encoder_fingerprint,
            "format_version": FORMAT_VERSION,
            "bytes_on_disk": 0,  # not something a Qdrant client can see
            "directory": None,
            "url": self.conn.where,
            "collection": self.name,
            "shard_number": params.shard_number if params else self._shards,
            "replication_factor": params.replication_factor if params else self._replicas,
            "indexed_fields": sorted(manifest.fields),
        }

    def drop(self) -> None:
        """Delete the whole Qdrant collection (documents and settings), then close. What
        removing a local collection's directory is; Qdrant keeps no copy."""
        self._check_writable()
        if self._exists():
            self._q("delete_collection")
        self.close()

    def close(self) -> None:
        """Close the connection (unless the caller gave the client). Idempotent."""
        if not self._closed:
            self._closed = True
            self.conn.close()

    def __enter__(self) -> QdrantCollection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

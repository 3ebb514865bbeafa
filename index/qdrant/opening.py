"""Opening a Qdrant collection: the connection, and the collection's settings point read and
checked (or the collection created) before any document is touched. The base of
`QdrantCollection`; the rules for what a collection must hold live here.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from qdrant_client import models

from semsearch.index.errors import CollectionError, FormatError, ReadOnlyError
from semsearch.index.filters import field_keys
from semsearch.index.limits import Limits
from semsearch.index.qdrant import payload as layout
from semsearch.index.qdrant.client import Connection
from semsearch.index.qdrant.errors import qdrant_errors
from semsearch.index.qdrant.ids import SETTINGS_POINT
from semsearch.index.qdrant.manifest import Manifest, check_compatible

log = logging.getLogger(__name__)

INDEX_KINDS = {
    "keyword": models.PayloadSchemaType.KEYWORD,
    "float": models.PayloadSchemaType.FLOAT,  # never "integer": it would round float bounds
    "bool": models.PayloadSchemaType.BOOL,
}


class Opened:
    def __init__(
        self,
        conn: Connection,
        name: str,
        limits: Limits,
        read_only: bool,
        wanted: Manifest,
        shard_number: int | None = None,
        replication_factor: int | None = None,
    ) -> None:
        self.conn = conn
        self.name = name
        self.where = f"{name!r} at {conn.where}"
        self.limits = limits
        self.read_only = read_only
        # What the collection must match (dim, encoder) and, until it exists, what it will be
        # created with (chunking and fields set meanwhile too).
        self._wanted = wanted
        self._dim: int | None = None  # the collection's, once it exists
        self._shards = shard_number
        self._replicas = replication_factor

    def _q(self, method: str, /, **kwargs: Any) -> Any:
        """`client.<method>(collection_name=self.name, ...)`, its failures as index errors."""
        with self.conn.serial(), qdrant_errors(self.where):
            return getattr(self.conn.client, method)(collection_name=self.name, **kwargs)

    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyError(f"the Qdrant collection {self.where} was opened read-only")

    def _exists(self) -> bool:
        return bool(self._q("collection_exists"))

    def _ready(self) -> bool:
        """Whether the collection exists (another process may have created it since)."""
        if self._dim is None and self._exists():
            self._load()
        return self._dim is not None

    def _load(self) -> None:
        """Read and check the existing collection's settings."""
        vectors = self._q("get_collection").config.params.vectors
        cosine = isinstance(vectors, models.VectorParams) and (
            vectors.distance == models.Distance.COSINE
        )
        if not cosine:
            raise FormatError(
                f"the Qdrant collection {self.where} does not hold one unnamed cosine vector per "
                "point: it was not made by semsearch; name another collection"
            )
        manifest = self._read_manifest()
        if manifest is None:
            if self.read_only or self._q("count", exact=True).count:
                raise FormatError(
                    f"the Qdrant collection {self.where} has no semsearch settings point: it was "
                    "not made by semsearch; name another collection"
                )
            # Empty: just created, here or by another process, or by hand. Ours now.
            self._prepare(vectors.size)
            manifest = self._manifest_now()
        if manifest.dim != vectors.size:
            raise FormatError(
                f"the Qdrant collection {self.where} holds {vectors.size}-dimensional vectors but "
                f"its settings say {manifest.dim}"
            )
        wanted_fingerprint = self._wanted.encoder_fingerprint
        check_compatible(manifest, self.where, self._wanted.dim, wanted_fingerprint)
        if manifest.encoder_fingerprint is None and wanted_fingerprint and not self.read_only:
            self._update_manifest(encoder_fingerprint=wanted_fingerprint)
        self._dim = vectors.size

    def _create(self, dim: int) -> None:
        """Create the collection (cosine, `dim`), its payload indexes and its settings point."""
        log.info("creating the Qdrant collection %s (%d dimensions, cosine)", self.where, dim)
        try:
            self._q(
                "create_collection",
                vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
                shard_number=self._shards,
                replication_factor=self._replicas,
            )
        except (CollectionError, ValueError):
            if not self._exists():  # else another process created it first: use theirs
                raise
        self._load()  # new and empty: gets its payload indexes and settings point there

    def _prepare(self, dim: int) -> None:
        """An empty collection's payload indexes and settings point (unless another process
        wrote one meanwhile)."""
        for key in layout.KEYWORD_FIELDS:
            self._q(
                "create_payload_index",
                field_name=key,
                field_schema=models.PayloadSchemaType.KEYWORD,
                wait=True,
            )
        for field, kind in self._wanted.fields.items():
            self._create_field_index(field, kind)
        if self._read_manifest() is None:
            self._write_manifest(dataclasses.replace(self._wanted, dim=dim))

    def _create_field_index(self, field: str, kind: str) -> None:
        key = layout.view_path(field_keys(field))
        self._q("create_payload_index", field_name=key, field_schema=INDEX_KINDS[kind], wait=True)

    # -- the settings point --------------------------------------------------------------------

    def _read_manifest(self) -> Manifest | None:
        found = self._q("retrieve", ids=[SETTINGS_POINT], with_payload=True)
        return Manifest.from_payload(found[0].payload) if found else None

    def _write_manifest(self, manifest: Manifest) -> None:
        assert manifest.dim is not None
        vector = [1.0] + [0.0] * (manifest.dim - 1)  # any unit vector: it is never searched
        point = models.PointStruct(id=SETTINGS_POINT, vector=vector, payload=manifest.to_payload())
        self._q("upsert", points=[point], wait=True)

    def _update_manifest(self, **values: Any) -> None:
        self._q("set_payload", payload=values, points=[SETTINGS_POINT], wait=True)

    def _manifest(self) -> Manifest:
        """The settings as stored now (as wanted, before the collection exists)."""
        return self._manifest_now() if self._ready() else self._wanted

    def _manifest_now(self) -> Manifest:
        manifest = self._read_manifest()
        if manifest is None:
            raise FormatError(f"the settings point of the Qdrant collection {self.where} is gone")
        return manifest

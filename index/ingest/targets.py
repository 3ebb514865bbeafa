"""Where `index build` writes when it is not a local directory: a Qdrant collection. The build
opens it through the collection interface (index/backend.py), so the same pipeline, local or on
Ray, writes either store. Frozen and plain, so Ray can hand it to the actor that looks up what is
stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from semsearch.index.backend import CollectionBackend, open_backend
from semsearch.index.limits import Limits


@dataclass(frozen=True)
class QdrantTarget:
    collection: str
    url: str
    api_key: str | None = None
    shard_number: int | None = None
    replication_factor: int | None = None

    def open(self, embedder: Any | None = None, read_only: bool = False) -> CollectionBackend:
        """The collection, created for `embedder` (its dimension and fingerprint) when new."""
        return open_backend(
            "qdrant",
            collection=self.collection,
            url=self.url,
            api_key=self.api_key,
            dim=embedder.dim if embedder is not None else None,
            encoder_fingerprint=embedder.fingerprint() if embedder is not None else None,
            read_only=read_only,
            limits=Limits(),
            shard_number=self.shard_number,
            replication_factor=self.replication_factor,
        )

    def lookups(self) -> CollectionBackend:
        """A read-only handle for the build's lookups of what is stored (`families`)."""
        return self.open(read_only=True)

    def __repr__(self) -> str:  # the key never reaches a log line
        return f"QdrantTarget({self.collection!r} at {self.url})"

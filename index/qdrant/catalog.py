"""The collections of one Qdrant server (or in-process store) through one shared client: what the
service's collection registry needs beside an open collection (which exist, drop one), and
collections opened on that client.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from semsearch.index.limits import Limits
from semsearch.index.qdrant.client import connect
from semsearch.index.qdrant.collection import QdrantCollection
from semsearch.index.qdrant.errors import qdrant_errors


class QdrantCatalog:
    def __init__(
        self,
        *,
        url: str | None = None,
        api_key: str | None = None,
        location: str | None = None,
        path: str | Path | None = None,
        shard_number: int | None = None,
        replication_factor: int | None = None,
        timeout_s: float | None = None,
    ) -> None:
        self._conn = connect(url, api_key, location, path, timeout_s=timeout_s)
        self._shards, self._replicas = shard_number, replication_factor

    def open(
        self,
        name: str,
        *,
        dim: int | None = None,
        encoder_fingerprint: dict[str, Any] | None = None,
        read_only: bool = False,
        limits: Limits | None = None,
    ) -> QdrantCollection:
        """`QdrantCollection.open` on this catalog's client (closing it leaves the client open)."""
        return QdrantCollection.open(
            name,
            client=self._conn.client,
            dim=dim,
            encoder_fingerprint=encoder_fingerprint,
            read_only=read_only,
            limits=limits,
            shard_number=self._shards,
            replication_factor=self._replicas,
        )

    def names(self) -> list[str]:
        """Every collection on the server (semsearch's or not), by name."""
        with self._conn.serial(), qdrant_errors(f"list at {self._conn.where}"):
            found = self._conn.client.get_collections().collections
        return sorted(c.name for c in found)

    def exists(self, name: str) -> bool:
        with self._conn.serial(), qdrant_errors(f"{name!r} at {self._conn.where}"):
            return bool(self._conn.client.collection_exists(collection_name=name))

    def drop(self, name: str) -> None:
        """Delete the collection `name` (its documents and settings); nothing if there is none."""
        with self._conn.serial(), qdrant_errors(f"{name!r} at {self._conn.where}"):
            if self._conn.client.collection_exists(collection_name=name):
                self._conn.client.delete_collection(collection_name=name)

    def close(self) -> None:
        self._conn.close()

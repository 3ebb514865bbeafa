"""Where a server's collections live (SEMSEARCH_STORE): what the collection registry asks of a
store beside an open collection — which names exist, open one, drop one, describe one unopened.

- `LocalPlaces`: `default` is the directory SEMSEARCH_INDEX_DIR, every other collection a
  directory named after it under SEMSEARCH_COLLECTIONS_DIR (a name is letters, digits, `_` and
  `-` only, so it cannot reach outside).
- `QdrantPlaces`: `default` is the Qdrant collection SEMSEARCH_QDRANT_COLLECTION, every other one
  `<that>__<name>`, on the server SEMSEARCH_QDRANT_URL through one shared client.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Hashable
from pathlib import Path
from typing import Any, Protocol

from semsearch.index import CollectionBackend, InvalidArgument, open_backend
from semsearch.index.persistence import MANIFEST
from semsearch.index.summary import summarize
from semsearch.paths import COLLECTION_NAME, QDRANT_SEPARATOR, qdrant_collection
from semsearch.service.settings import QDRANT_IN_PROCESS, Settings

log = logging.getLogger(__name__)

DEFAULT = "default"
_DROPPING = ".dropping-"  # a dropped collection's directory, renamed before it is removed


class Places(Protocol):
    kind: str  # "local" or "qdrant"

    def exists(self, name: str) -> bool: ...
    def names(self) -> list[str]: ...  # the named collections (not `default`), sorted
    def open(self, name: str, **options: Any) -> CollectionBackend: ...
    def identity(self, name: str) -> Hashable: ...  # changes when it is dropped or re-created
    def drop(self, name: str) -> None: ...  # its handle is closed already
    def describe(self, name: str) -> dict[str, Any]: ...  # Collection.info's keys, unopened
    def close(self) -> None: ...


class LocalPlaces:
    kind = "local"

    def __init__(self, settings: Settings, dim: int, fingerprint: dict[str, Any]) -> None:
        self.settings = settings
        self.root = settings.collections_root()
        self._dim, self._fingerprint = dim, fingerprint

    def directory(self, name: str) -> Path:
        return self.settings.index_dir if name == DEFAULT else self.root / name

    def exists(self, name: str) -> bool:
        return name == DEFAULT or (self.directory(name) / MANIFEST).is_file()

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if COLLECTION_NAME.fullmatch(p.name) and p.name != DEFAULT and self.exists(p.name)
        )

    def open(self, name: str, **options: Any) -> CollectionBackend:
        if name != DEFAULT:
            self.root.mkdir(parents=True, exist_ok=True)
        return open_backend(
            "local",
            self.directory(name),
            dim=self._dim,
            encoder_fingerprint=self._fingerprint,
            limits=self.settings.index_limits(),
            **options,
        )

    def identity(self, name: str) -> Hashable:
        """The directory's (device, inode): another worker process that drops the collection,
        or drops and re-creates it, leaves a handle opened before on another (or no) directory."""
        try:
            st = os.stat(self.directory(name))
        except FileNotFoundError:
            return None
        return st.st_dev, st.st_ino

    def drop(self, name: str) -> None:
        """Rename the directory first, so a crash half-way leaves no half collection under the
        name, then remove it."""
        doomed = self.root / f"{_DROPPING}{name}-{uuid.uuid4().hex}"
        self.directory(name).rename(doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    def describe(self, name: str) -> dict[str, Any]:
        return summarize(self.directory(name))

    def close(self) -> None:
        pass


class QdrantPlaces:
    kind = "qdrant"

    def __init__(self, settings: Settings, dim: int, fingerprint: dict[str, Any]) -> None:
        from semsearch.index.qdrant import QdrantCatalog

        assert settings.qdrant_url is not None, "settings check the URL for store=qdrant"
        key = settings.qdrant_api_key
        in_process = settings.qdrant_url == QDRANT_IN_PROCESS
        self.settings = settings
        self.catalog = QdrantCatalog(
            url=None if in_process else settings.qdrant_url,
            location=QDRANT_IN_PROCESS if in_process else None,
            api_key=key.get_secret_value() if key is not None else None,
            shard_number=settings.qdrant_shard_number,
            replication_factor=settings.qdrant_replication_factor,
        )
        self._dim, self._fingerprint = dim, fingerprint

    def qdrant_name(self, name: str) -> str:
        return qdrant_collection(self.settings.qdrant_collection, name)

    def exists(self, name: str) -> bool:
        return name == DEFAULT or self.catalog.exists(self.qdrant_name(name))

    def names(self) -> list[str]:
        prefix = self.qdrant_name(DEFAULT) + QDRANT_SEPARATOR
        return sorted(
            n[len(prefix) :]
            for n in self.catalog.names()
            if n.startswith(prefix) and COLLECTION_NAME.fullmatch(n[len(prefix) :])
        )

    def open(self, name: str, **options: Any) -> CollectionBackend:
        given = sorted(k for k, v in options.items() if v is not None)
        if given:
            raise InvalidArgument(
                f"{', '.join(given)}: options of the local store; a Qdrant collection takes none "
                "(SEMSEARCH_STORE=qdrant)"
            )
        return self.catalog.open(
            self.qdrant_name(name),
            dim=self._dim,
            encoder_fingerprint=self._fingerprint,
            limits=self.settings.index_limits(),
        )

    def identity(self, name: str) -> Hashable:
        return name  # a collection dropped by another replica: Qdrant answers 404 (NotFound)

    def drop(self, name: str) -> None:
        self.catalog.drop(self.qdrant_name(name))

    def describe(self, name: str) -> dict[str, Any]:
        with self.catalog.open(self.qdrant_name(name), read_only=True) as collection:
            return _described(collection.info())

    def close(self) -> None:
        self.catalog.close()


def _described(info: dict[str, Any]) -> dict[str, Any]:
    keys = ("count", "dim", "metric", "index_type", "factory", "tombstones", "chunking")
    return {**{k: info[k] for k in keys}, "bytes_on_disk": info.get("bytes_on_disk", 0)}


def places_for(settings: Settings, dim: int, fingerprint: dict[str, Any]) -> Places:
    if settings.store == "qdrant":
        return QdrantPlaces(settings, dim, fingerprint)
    return LocalPlaces(settings, dim, fingerprint)

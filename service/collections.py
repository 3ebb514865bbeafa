"""Named collections: `default` (the collection at SEMSEARCH_INDEX_DIR, what the routes without a
collection use) and the ones created through `POST /collections`, each a directory named after it
under SEMSEARCH_COLLECTIONS_DIR.

A name is 1 to 64 letters, digits, `_` and `-`, starting with a letter or digit: it becomes a
directory name as it is, so no name can reach outside that directory. Every collection holds
vectors of the served encoder (it refuses another, as the default does). Collections are opened
on first use and stay open (each holds its vector index in memory): at most
SEMSEARCH_MAX_COLLECTIONS of them exist, the default included.

SEMSEARCH_STORE says where they live (`open_store`): `local` directories, or `none` (embed-only:
no collection, no directory; `check_store` answers the routes that need one with a 503).
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import Any

from semsearch.index import Collection
from semsearch.index import NotFound as IndexNotFound
from semsearch.index.persistence import MANIFEST
from semsearch.index.summary import summarize
from semsearch.paths import COLLECTION_NAME
from semsearch.service.errors import Conflict, NotFound, Overloaded, Unhealthy, ValidationFailed
from semsearch.service.settings import Settings

log = logging.getLogger(__name__)

DEFAULT = "default"
_DROPPING = ".dropping-"  # a dropped collection's directory, renamed before it is removed


def check_store(settings: Settings) -> None:
    """Refuse (503) what needs documents when this server keeps none."""
    if settings.store == "none":
        raise Unhealthy(
            "this server stores no documents (SEMSEARCH_STORE=none: embeddings and tokenization "
            "only); the document, search, collection and RAG routes need SEMSEARCH_STORE=local "
            "or qdrant"
        )


def open_store(
    settings: Settings, dim: int, fingerprint: dict[str, Any]
) -> tuple[Collection, CollectionRegistry] | None:
    """The default collection and the registry of every collection, on SEMSEARCH_STORE; None
    for `none` (nothing is opened or created). Refuses (FingerprintMismatch) a collection built
    by another encoder or backend."""
    if settings.store == "none":
        return None
    if settings.store == "qdrant":
        # NOT WIRED YET: the Qdrant backend (index/qdrant/) opens here. Until it does, a server
        # with SEMSEARCH_STORE=qdrant fails to start: /health answers 503 "failed", the log and
        # the keyed routes' 503 say why.
        raise NotImplementedError(
            "SEMSEARCH_STORE=qdrant is not wired into the service yet; use SEMSEARCH_STORE=local "
            "or none"
        )
    default = Collection.open(
        settings.index_dir,
        dim=dim,
        encoder_fingerprint=fingerprint,
        limits=settings.index_limits(),
    )
    return default, CollectionRegistry(settings, dim, fingerprint, default)


def check_name(name: str) -> str:
    if not COLLECTION_NAME.fullmatch(name):
        raise ValidationFailed(
            f"collection name {name[:80]!r}: 1 to 64 letters, digits, '_' and '-', starting "
            "with a letter or digit",
            param="name",
        )
    return name


class CollectionRegistry:
    def __init__(
        self, settings: Settings, dim: int, fingerprint: dict[str, Any], default: Collection
    ) -> None:
        self.settings = settings
        self.root = settings.collections_root()
        self._dim = dim
        self._fingerprint = fingerprint
        self._open: dict[str, Collection] = {DEFAULT: default}
        # Each named collection's directory as it was opened (device, inode): another worker
        # process that drops it, or drops and re-creates it, leaves this one a stale handle.
        self._opened_as: dict[str, tuple[int, int] | None] = {}
        self._lock = threading.Lock()  # creating, opening and dropping: one at a time

    def _directory(self, name: str) -> Path:
        return self.settings.index_dir if name == DEFAULT else self.root / name

    def _exists(self, name: str) -> bool:
        return name == DEFAULT or (self._directory(name) / MANIFEST).is_file()

    def _open_collection(self, name: str, **options: Any) -> Collection:
        if len(self._open) >= self.settings.max_collections:
            raise Overloaded(
                f"{len(self._open)} collections are open, the most this server keeps "
                "(SEMSEARCH_MAX_COLLECTIONS); drop one first"
            )
        collection = Collection.open(
            self._directory(name),
            dim=self._dim,
            encoder_fingerprint=self._fingerprint,
            limits=self.settings.index_limits(),
            **options,
        )
        self._open[name] = collection
        self._opened_as[name] = _identity(self._directory(name))
        return collection

    def _current(self, name: str) -> Collection | None:
        """The open handle of `name`, unless its directory changed since it was opened (dropped,
        re-created or swapped by another process): that handle is closed and forgotten."""
        opened = self._open.get(name)
        if opened is None or name == DEFAULT:
            return opened
        if _identity(self._directory(name)) == self._opened_as.get(name):
            return opened
        with self._lock:
            if self._open.get(name) is opened:
                self._forget(name)
        return None

    def _forget(self, name: str) -> None:
        collection = self._open.pop(name)
        self._opened_as.pop(name, None)
        try:
            collection.close()
        except (OSError, sqlite3.Error) as exc:  # its files went with its directory, or the disk
            log.warning("collection %s did not close cleanly: %s", name, exc)

    def get(self, name: str) -> Collection:
        """The collection `name`, opened if need be; 404 if there is none (blocking: call it
        off the event loop)."""
        check_name(name)
        opened = self._current(name)  # the common case, without waiting on an open elsewhere
        if opened is not None:
            return opened
        with self._lock:
            if name in self._open:
                return self._open[name]
            if not self._exists(name):
                raise NotFound(f"no collection named {name!r}; create it with POST /collections")
            return self._open_collection(name)

    def create(
        self, name: str, index_type: str | None, options: dict[str, Any] | None
    ) -> Collection:
        """A new, empty collection; 409 if the name is taken."""
        check_name(name)
        with self._lock:
            if self._exists(name):
                raise Conflict(f"a collection named {name!r} exists")
            self.root.mkdir(parents=True, exist_ok=True)
            log.info("creating collection %s", name)
            return self._open_collection(name, index_type=index_type, index_options=options)

    def names(self) -> list[str]:
        """Every collection: the default first, then the others by name."""
        found = []
        if self.root.is_dir():
            found = sorted(
                p.name
                for p in self.root.iterdir()
                if COLLECTION_NAME.fullmatch(p.name) and self._exists(p.name)
            )
        return [DEFAULT, *(n for n in found if n != DEFAULT)]

    def drop(self, name: str) -> None:
        """Close the collection and remove its directory (renamed first, so a crash half-way
        leaves no half collection under its name). The default collection cannot be dropped."""
        check_name(name)
        if name == DEFAULT:
            raise ValidationFailed(
                "the default collection cannot be dropped; delete its documents instead",
                param="name",
            )
        self._current(name)  # a handle on a directory dropped elsewhere goes first
        with self._lock:
            if not self._exists(name):
                raise NotFound(f"no collection named {name!r}")
            if name in self._open:
                self._forget(name)
            doomed = self.root / f"{_DROPPING}{name}-{uuid.uuid4().hex}"
            self._directory(name).rename(doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        log.info("dropped collection %s", name)

    def describe_all(self) -> list[dict[str, Any]]:
        """Every collection's description (`Collection.info`), `loaded` saying whether this
        server has it open; one that is not is read from its files, not opened (listing many
        never loads their indexes, nor counts against SEMSEARCH_MAX_COLLECTIONS)."""
        out = []
        for name in self.names():
            opened = self._current(name)
            try:
                info = opened.info() if opened is not None else summarize(self._directory(name))
            except IndexNotFound:
                continue  # dropped since it was listed
            out.append({"name": name, "loaded": opened is not None, **info})
        return out

    def close(self) -> None:
        with self._lock:
            for name in list(self._open):
                self._forget(name)


def _identity(directory: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino

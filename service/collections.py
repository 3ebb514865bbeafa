"""Named collections: `default` (what the routes without a collection use) and the ones created
through `POST /collections`, on the store SEMSEARCH_STORE names (service/collection_places.py:
directories, or Qdrant collections).

A name is 1 to 64 letters, digits, `_` and `-`, starting with a letter or digit. Every collection
holds vectors of the served encoder (it refuses another, as the default does). Collections are
opened on first use and stay open (a local one holds its vector index in memory): at most
SEMSEARCH_MAX_COLLECTIONS of them, the default included.

`open_store` opens the default and the registry; with SEMSEARCH_STORE=none (embed-only) there is
none, and `check_store` answers the routes that need one with a 503.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Hashable
from typing import Any

from semsearch.index import CollectionBackend
from semsearch.index import NotFound as IndexNotFound
from semsearch.paths import COLLECTION_NAME
from semsearch.service.collection_places import DEFAULT, Places, places_for
from semsearch.service.errors import Conflict, NotFound, Overloaded, Unhealthy, ValidationFailed
from semsearch.service.settings import Settings

log = logging.getLogger(__name__)


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
) -> tuple[CollectionBackend, CollectionRegistry] | None:
    """The default collection and the registry of every collection, on SEMSEARCH_STORE; None
    for `none` (nothing is opened or created). Refuses (FingerprintMismatch) a collection built
    by another encoder or backend."""
    if settings.store == "none":
        return None
    places = places_for(settings, dim, fingerprint)
    try:
        default = places.open(DEFAULT)
    except BaseException:
        places.close()
        raise
    return default, CollectionRegistry(settings, places, default)


def check_name(name: str) -> str:
    if not COLLECTION_NAME.fullmatch(name):
        raise ValidationFailed(
            f"collection name {name[:80]!r}: 1 to 64 letters, digits, '_' and '-', starting "
            "with a letter or digit",
            param="name",
        )
    return name


class CollectionRegistry:
    def __init__(self, settings: Settings, places: Places, default: CollectionBackend) -> None:
        self.settings = settings
        self.places = places
        self._open: dict[str, CollectionBackend] = {DEFAULT: default}
        # Each named collection's identity as it was opened: another worker process that drops
        # it, or drops and re-creates it, leaves this one a stale handle (collection_places.py).
        self._opened_as: dict[str, Hashable] = {}
        self._lock = threading.Lock()  # creating, opening and dropping: one at a time

    def _open_collection(self, name: str, **options: Any) -> CollectionBackend:
        if len(self._open) >= self.settings.max_collections:
            raise Overloaded(
                f"{len(self._open)} collections are open, the most this server keeps "
                "(SEMSEARCH_MAX_COLLECTIONS); drop one first"
            )
        collection = self.places.open(name, **options)
        self._open[name] = collection
        self._opened_as[name] = self.places.identity(name)
        return collection

    def _current(self, name: str) -> CollectionBackend | None:
        """The open handle of `name`, unless the collection changed since it was opened
        (dropped, re-created or swapped by another process): that handle is closed, forgotten."""
        opened = self._open.get(name)
        if opened is None or name == DEFAULT:
            return opened
        if self.places.identity(name) == self._opened_as.get(name):
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

    def get(self, name: str) -> CollectionBackend:
        """The collection `name`, opened if need be; 404 if there is none (blocking: call it
        off the event loop)."""
        check_name(name)
        opened = self._current(name)  # the common case, without waiting on an open elsewhere
        if opened is not None:
            return opened
        with self._lock:
            if name in self._open:
                return self._open[name]
            if not self.places.exists(name):
                raise NotFound(f"no collection named {name!r}; create it with POST /collections")
            return self._open_collection(name)

    def create(
        self, name: str, index_type: str | None, options: dict[str, Any] | None
    ) -> CollectionBackend:
        """A new, empty collection; 409 if the name is taken."""
        check_name(name)
        with self._lock:
            if self.places.exists(name):
                raise Conflict(f"a collection named {name!r} exists")
            log.info("creating collection %s", name)
            return self._open_collection(name, index_type=index_type, index_options=options)

    def names(self) -> list[str]:
        """Every collection: the default first, then the others by name."""
        return [DEFAULT, *self.places.names()]

    def drop(self, name: str) -> None:
        """Close the collection and remove it (its directory, or its Qdrant collection). The
        default collection cannot be dropped."""
        check_name(name)
        if name == DEFAULT:
            raise ValidationFailed(
                "the default collection cannot be dropped; delete its documents instead",
                param="name",
            )
        self._current(name)  # a handle on a collection dropped elsewhere goes first
        with self._lock:
            if not self.places.exists(name):
                raise NotFound(f"no collection named {name!r}")
            if name in self._open:
                self._forget(name)
            self.places.drop(name)
        log.info("dropped collection %s", name)

    def describe_all(self) -> list[dict[str, Any]]:
        """Every collection's description (`Collection.info`), `loaded` saying whether this
        server has it open; one that is not is read from its files, not opened (listing many
        never loads their indexes, nor counts against SEMSEARCH_MAX_COLLECTIONS)."""
        out = []
        for name in self.names():
            opened = self._current(name)
            try:
                info = opened.info() if opened is not None else self.places.describe(name)
            except IndexNotFound:
                continue  # dropped since it was listed
            out.append({"name": name, "loaded": opened is not None, **info})
        return out

    def close(self) -> None:
        with self._lock:
            for name in list(self._open):
                self._forget(name)
        self.places.close()

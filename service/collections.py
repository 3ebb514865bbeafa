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

from semsearch.index import CollectionBackend, CollectionError
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
    """The open collections. A request holds the one it uses by a lease (`acquire`/`release`,
    `deps.get_collection`): a collection dropped or found stale meanwhile is closed when its last
    lease ends, never under a running query."""

    def __init__(self, settings: Settings, places: Places, default: CollectionBackend) -> None:
        self.settings = settings
        self.places = places
        self._open: dict[str, CollectionBackend] = {DEFAULT: default}
        # Each named collection's identity as it was opened: another worker process that drops
        # it, or drops and re-creates it, leaves this one a stale handle (collection_places.py).
        self._opened_as: dict[str, Hashable] = {}
        self._lock = threading.Lock()  # creating, opening and dropping: one at a time
        # Leases by handle (id), and handles no longer open that wait for their last lease.
        self._leases: dict[int, int] = {}
        self._retired: dict[int, CollectionBackend] = {}
        self._dropping: set[int] = set()  # retired handles a drop waits on and closes itself
        self._leases_lock = threading.Lock()  # taken after _lock, never before it
        self._unleased = threading.Condition(self._leases_lock)

    # -- leases ---------------------------------------------------------------------------------

    def acquire(self, name: str) -> CollectionBackend:
        """The collection `name`, opened if need be, held until `release`; 404 if there is
        none (blocking: call it off the event loop)."""
        check_name(name)
        while True:
            opened = self._current(name)  # an open one, without waiting on an open elsewhere
            if opened is None:
                with self._lock:
                    if name not in self._open:
                        if not self.places.exists(name):
                            raise NotFound(
                                f"no collection named {name!r}; create it with POST /collections"
                            )
                        self._open_collection(name)
                continue
            if self._lease(name, opened):
                return opened

    def release(self, collection: CollectionBackend) -> None:
        with self._leases_lock:
            left = self._leases[id(collection)] - 1
            if left:
                self._leases[id(collection)] = left
                return
            del self._leases[id(collection)]
            self._unleased.notify_all()
            if id(collection) in self._dropping:
                return  # the drop waiting for this closes it
            retired = self._retired.pop(id(collection), None)
        if retired is not None:  # its last user is done: close it now, off the caller's path
            threading.Thread(target=_close, args=(retired,), daemon=True).start()

    def _lease(self, name: str, opened: CollectionBackend) -> bool:
        """Count a lease on `opened` if it is still `name`'s open handle."""
        with self._leases_lock:
            if self._open.get(name) is not opened:
                return False  # forgotten meanwhile
            self._leases[id(opened)] = self._leases.get(id(opened), 0) + 1
            return True

    # -- opening and forgetting -----------------------------------------------------------------

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
        (dropped, re-created or swapped by another process): that handle is forgotten."""
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
        """No longer open: closed now, or when its last lease ends (caller holds _lock)."""
        with self._leases_lock:
            collection = self._open.pop(name)
            self._opened_as.pop(name, None)
            if self._leases.get(id(collection)) or id(collection) in self._dropping:
                self._retired[id(collection)] = collection
                return
        _close(collection, name)

    # -- the routes' operations -----------------------------------------------------------------

    def create(
        self, name: str, index_type: str | None, options: dict[str, Any] | None
    ) -> CollectionBackend:
        """A new, empty collection, leased (release it); 409 if the name is taken."""
        check_name(name)
        with self._lock:
            if self.places.exists(name):
                raise Conflict(f"a collection named {name!r} exists")
            log.info("creating collection %s", name)
            collection = self._open_collection(name, index_type=index_type, index_options=options)
        if not self._lease(name, collection):
            raise NotFound(f"the collection {name!r} was dropped as it was made")
        return collection

    def names(self) -> list[str]:
        """Every collection: the default first, then the others by name."""
        return [DEFAULT, *self.places.names()]

    def drop(self, name: str) -> None:
        """Remove the collection (its directory, or its Qdrant collection); requests using it
        finish first on their handle. The default collection cannot be dropped."""
        check_name(name)
        if name == DEFAULT:
            raise ValidationFailed(
                "the default collection cannot be dropped; delete its documents instead",
                param="name",
            )
        self._current(name)  # a handle on a collection dropped elsewhere goes first
        with self._lock:  # no one opens it again meanwhile: they wait, then find it gone
            if not self.places.exists(name):
                raise NotFound(f"no collection named {name!r}")
            if name in self._open:
                self._close_when_unleased(name)
            self.places.drop(name)
        log.info("dropped collection %s", name)

    def _close_when_unleased(self, name: str) -> None:
        """Forget `name` and close its handle once the requests using it are done (waiting at
        most SEMSEARCH_LOCK_TIMEOUT_S; past that they may fail as its files go). Holds _lock."""
        handle = self._open[name]
        with self._leases_lock:
            self._dropping.add(id(handle))
        try:
            self._forget(name)
            with self._unleased:
                done = self._unleased.wait_for(
                    lambda: not self._leases.get(id(handle)), self.settings.lock_timeout_s
                )
                self._retired.pop(id(handle), None)
        finally:
            with self._leases_lock:
                self._dropping.discard(id(handle))
        if not done:
            log.warning("dropping collection %s while requests still use it", name)
        _close(handle, name)

    def describe_all(self) -> list[dict[str, Any]]:
        """Every collection's description (`Collection.info`), `loaded` saying whether this
        server has it open; one that is not is read from its files, not opened (listing many
        never loads their indexes, nor counts against SEMSEARCH_MAX_COLLECTIONS). One that
        cannot be read is left out (and logged): the rest are still listed."""
        out = []
        for name in self.names():
            opened = self._current(name)
            if opened is not None and not self._lease(name, opened):
                opened = None
            try:
                info = opened.info() if opened is not None else self.places.describe(name)
            except IndexNotFound:
                continue  # dropped since it was listed
            except (CollectionError, sqlite3.Error, OSError) as exc:
                log.warning("collection %s left out of the listing: %s", name, exc)
                continue
            finally:
                if opened is not None:
                    self.release(opened)
            out.append({"name": name, "loaded": opened is not None, **info})
        return out

    def close(self) -> None:
        """At shutdown: every handle, leased or not."""
        with self._lock, self._leases_lock:
            handles = list(self._open.items()) + [("retired", c) for c in self._retired.values()]
            self._open.clear()
            self._retired.clear()
            self._leases.clear()
        for name, collection in handles:
            _close(collection, name)
        self.places.close()


def _close(collection: CollectionBackend, name: str = "") -> None:
    try:
        collection.close()
    except (OSError, sqlite3.Error) as exc:  # its files went with its directory, or the disk
        log.warning("collection %s did not close cleanly: %s", name, exc)

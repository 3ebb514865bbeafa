"""What a collection's owner declares beside its documents: metadata fields that get an
expression index, and the default chunking of long documents. Both live in the collection's
SQLite file, so backups and snapshots keep them. Mixed into `Collection`."""

from __future__ import annotations

from pathlib import Path

from semsearch.index import filters
from semsearch.index.limits import Limits
from semsearch.index.locking import writer_lock
from semsearch.index.store import Store


class Declarations:
    """Needs the collection's directory, limits and store."""

    directory: Path
    limits: Limits
    store: Store

    def _check_writable(self) -> None:
        raise NotImplementedError

    def index_field(self, field: str) -> bool:
        """Declare metadata field `field` (a filter path, `author.name`) for an SQLite
        expression index, so a selective filter on it reads the matching rows only, not every
        document's metadata; built now (seconds for a million documents, writes wait). False if
        it was declared before."""
        self._check_writable()
        path = filters.field_path(field)
        with writer_lock(self.directory, self.limits.lock_timeout_s):
            return self.store.index_field(path, field, filters.sql_literal(path))

    def chunking(self) -> dict[str, int]:
        """The collection's default chunking of long documents, as set (`tokens`, `overlap`)."""
        found = {k: self.store.option(f"chunk_{k}") for k in ("tokens", "overlap")}
        return {k: v for k, v in found.items() if v is not None}

    def set_chunking(self, tokens: int | None, overlap: int | None) -> None:
        """Set the default chunking (what a writer uses when a request names none)."""
        self._check_writable()
        values = {
            f"chunk_{k}": v for k, v in (("tokens", tokens), ("overlap", overlap)) if v is not None
        }
        with writer_lock(self.directory, self.limits.lock_timeout_s):
            self.store.set_options(values)

    def indexed_fields(self) -> list[str]:
        return sorted(self.store.indexed_fields().values())

"""The exceptions `index/` raises: one base class, one subclass per thing a caller can act on.

The service maps these types to HTTP status codes in one table (service/errors.py); the builtin
bases (ValueError, KeyError) keep plain-Python callers working with the usual `except` clauses.
"""

from __future__ import annotations

from typing import Any

_SHOWN_CHARS = 80


def shown(value: Any) -> str:
    """`repr(value)` cut short: messages name what was wrong without echoing a megabyte back.

    A container's repr is built lazily on a bounded copy, so a 900-level nest costs nothing."""
    if isinstance(value, dict | list):
        kind = "object" if isinstance(value, dict) else "list"
        return f"<a {kind} of {len(value)} items>"
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


class CollectionError(Exception):
    """Base class for every error raised by `index/`."""


class FilterError(CollectionError, ValueError):
    """A metadata filter is malformed: unknown operator, wrong value type, bad field name."""


class DimensionMismatch(CollectionError, ValueError):
    """Vectors (or a requested dimension) do not match the collection's dimension."""


class FingerprintMismatch(CollectionError):
    """The collection was built with another encoder; its vectors are not comparable."""


class InvalidDocument(CollectionError, ValueError):
    """A document is missing its text, has a non-string id or non-object metadata."""


class NotFound(CollectionError, KeyError):
    """No document with that id (or no collection in that directory)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "not found"


class FormatError(CollectionError):
    """A file in the collection directory is from another format version or unreadable."""


class ReadOnlyError(CollectionError):
    """A write was attempted on a collection opened read-only."""


class InvalidArgument(CollectionError, ValueError):
    """A bad argument to a collection method (k < 1, a malformed vector...)."""


class Busy(CollectionError):
    """The collection could not do this now (another writer, a slow query); retrying may work."""


class LockTimeout(Busy):
    """Another process held the collection's writer lock for longer than `lock_timeout_s`."""


class QueryTimeout(Busy):
    """One SQL query ran past `query_timeout_s` and was interrupted."""


class KeywordIndexMissing(CollectionError):
    """A keyword or hybrid search on a read-only handle of a collection whose keyword index is
    not built yet (or is behind its documents); a writable open builds it."""

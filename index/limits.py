"""Bounds on the work one call into a collection may cause; the service sets them from its settings.

Every value is a ceiling on something a caller (an HTTP client, ultimately) controls: the size of a
filter, of a document's metadata, how long one SQL query may run, how long a write waits for
another process's writer lock. Going past one is the caller's error (or a 503 for the timeouts),
never a hung server.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    # Conditions in one filter, an `in`/`nin` list's items each counted as one.
    max_filter_conditions: int = 256
    # A document's metadata, as compact JSON, and its nesting depth (objects and lists).
    max_metadata_bytes: int = 65_536
    max_metadata_depth: int = 32
    # Distinct terms in one keyword query (keyword and hybrid search); each is a posting list
    # that BM25 walks.
    max_keyword_terms: int = 64
    # Memory for the postings keyword searches read (index/bm25.py), per open collection; the
    # least recently used go first, a query's own terms always fit.
    keyword_cache_mb: int = 64
    # One SQL query of a search (a filter scan); past it the search fails with QueryTimeout.
    query_timeout_s: float = 5.0
    # Waiting for another process's writer lock (a snapshot, an index build); then LockTimeout.
    lock_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        for name in (
            "max_filter_conditions",
            "max_metadata_bytes",
            "max_metadata_depth",
            "max_keyword_terms",
            "keyword_cache_mb",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("query_timeout_s", "lock_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")

"""Vector collections: documents in SQLite (the truth), vectors in a FAISS index (a cache of it).

from semsearch.index import Collection
with Collection.open("index-dir") as col:
    col.upsert([{"id": "a", "text": "...", "metadata": {}}], vectors)
    hits = col.search(query_vector, k=10, filter={"lang": "en"})
    hits = col.search(query_vector, k=10, text="ip-netconf timeout", mode="hybrid")
"""

from __future__ import annotations

from semsearch.index.backend import CollectionBackend, open_backend
from semsearch.index.collection import Collection
from semsearch.index.config import IndexConfig
from semsearch.index.documents import Doc, Hit
from semsearch.index.errors import (
    Busy,
    CollectionError,
    DimensionMismatch,
    FilterError,
    FingerprintMismatch,
    FormatError,
    InvalidArgument,
    InvalidDocument,
    KeywordIndexMissing,
    LockTimeout,
    NotFound,
    QueryTimeout,
    ReadOnlyError,
)
from semsearch.index.fusion import Fusion
from semsearch.index.limits import Limits

__all__ = [
    "Busy",
    "Collection",
    "CollectionBackend",
    "CollectionError",
    "DimensionMismatch",
    "Doc",
    "FilterError",
    "FingerprintMismatch",
    "FormatError",
    "Fusion",
    "Hit",
    "IndexConfig",
    "InvalidArgument",
    "InvalidDocument",
    "KeywordIndexMissing",
    "Limits",
    "LockTimeout",
    "NotFound",
    "QueryTimeout",
    "ReadOnlyError",
    "open_backend",
]

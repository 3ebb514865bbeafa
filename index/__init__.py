"""Vector collections: documents in SQLite (the truth), vectors in a FAISS index (a cache of it).

from index import Collection
with Collection.open("index-dir") as col:
    col.upsert([{"id": "a", "text": "...", "metadata": {}}], vectors)
    hits = col.search(query_vector, k=10, filter={"lang": "en"})
"""

from __future__ import annotations

from index.collection import Collection
from index.config import IndexConfig
from index.documents import Doc, Hit
from index.errors import (
    Busy,
    CollectionError,
    DimensionMismatch,
    FilterError,
    FingerprintMismatch,
    FormatError,
    InvalidArgument,
    InvalidDocument,
    LockTimeout,
    NotFound,
    QueryTimeout,
    ReadOnlyError,
)
from index.limits import Limits

__all__ = [
    "Busy",
    "Collection",
    "CollectionError",
    "DimensionMismatch",
    "Doc",
    "FilterError",
    "FingerprintMismatch",
    "FormatError",
    "Hit",
    "IndexConfig",
    "InvalidArgument",
    "InvalidDocument",
    "Limits",
    "LockTimeout",
    "NotFound",
    "QueryTimeout",
    "ReadOnlyError",
]

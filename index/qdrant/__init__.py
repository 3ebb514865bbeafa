"""The Qdrant store: `QdrantCollection`, the collection interface (index/backend.py) over a Qdrant
server or qdrant-client's in-process mode. Needs the optional `qdrant-client` package.

from semsearch.index.qdrant import QdrantCollection
with QdrantCollection.open("docs", url="http://localhost:6333", dim=384) as col:
    col.upsert([{"id": "a", "text": "...", "metadata": {}}], vectors)
    hits = col.search(query_vector, k=10, filter={"lang": "en"})
"""

from __future__ import annotations

try:
    import qdrant_client  # noqa: F401
except ImportError as exc:  # the optional extra is not installed
    raise ImportError(
        "the Qdrant store needs the qdrant-client package: pip install 'semsearch[qdrant]'"
    ) from exc

from semsearch.index.qdrant.catalog import QdrantCatalog
from semsearch.index.qdrant.collection import QdrantCollection
from semsearch.index.qdrant.errors import QdrantUnavailable

__all__ = ["QdrantCatalog", "QdrantCollection", "QdrantUnavailable"]

"""Point ids: Qdrant takes integers or UUIDs, a document id is any string. Each document is the
point `uuid5(NAMESPACE, id)`, its id kept in the payload; the collection's own settings live in
one reserved point whose name is the empty string, which no document id can be.

A document also records its families (`family` in the payload): itself, and its parent when its
id is a chunk's, `<parent>#chunk-<n>` (index/ids.py). "Every stored form of document p" is then
one keyword match, `family` holds `p`, the same set `Store.families` reads from SQLite.
"""

from __future__ import annotations

import uuid

from semsearch.index.ids import CHUNK_MARK

# Fixed forever: changing it would orphan every point already stored.
NAMESPACE = uuid.UUID("6f1c9a52-4d7e-5b8a-9c3e-2a0d5e7f1b64")
SETTINGS_POINT = str(uuid.uuid5(NAMESPACE, ""))  # Doc ids are non-empty


def point_id(doc_id: str) -> str:
    """The Qdrant point id of document `doc_id` (a UUID string)."""
    return str(uuid.uuid5(NAMESPACE, doc_id))


def families_of(doc_id: str) -> list[str]:
    """The documents whose stored forms include `doc_id`: itself, and the parent of a chunk id
    (the `p` of `p#chunk-<digits>`, as `index.ids.chunk_number` reads it)."""
    head, mark, n = doc_id.rpartition(CHUNK_MARK)
    if mark and n.isascii() and n.isdigit():
        return [doc_id, head]
    return [doc_id]

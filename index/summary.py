"""What a collection on disk holds, read without opening it (`Collection.info`'s fields that do
not need the vector index in memory): for listing many collections without loading each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from semsearch.index.config import IndexConfig
from semsearch.index.errors import NotFound
from semsearch.index.persistence import DATABASE, bytes_on_disk, read_manifest
from semsearch.index.store import peek


def summarize(directory: Path) -> dict[str, Any]:
    """`count`, `dim`, `metric`, `index_type`, `chunking`, `bytes_on_disk` of the collection in
    `directory`; `factory` None and `tombstones` 0, since no index is loaded. NotFound if there
    is none."""
    manifest = read_manifest(directory)
    if manifest is None:
        raise NotFound(f"no collection in {directory}")
    count, meta = peek(directory / DATABASE)
    chunking = {k: meta[f"chunk_{k}"] for k in ("tokens", "overlap") if f"chunk_{k}" in meta}
    return {
        "count": count,
        "dim": manifest.dim,
        "metric": manifest.metric,
        "index_type": IndexConfig.from_dict(manifest.index).index_type,
        "factory": None,
        "tombstones": 0,
        "chunking": chunking,
        "bytes_on_disk": bytes_on_disk(directory),
    }

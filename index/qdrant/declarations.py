"""What a Qdrant collection's owner declares beside its documents, as on the local store
(index/declarations.py): metadata fields that get a payload index, and the default chunking of
long documents. Both live on the settings point. Mixed into `QdrantCollection`.
"""

from __future__ import annotations

from typing import Any

from semsearch.index.errors import InvalidArgument
from semsearch.index.filters import field_keys
from semsearch.index.qdrant import payload as layout
from semsearch.index.qdrant.filters import to_qdrant, without_settings
from semsearch.index.qdrant.opening import INDEX_KINDS, Opened

_SAMPLE = 256  # stored values looked at to choose an index's kind


class Declarations(Opened):
    def chunking(self) -> dict[str, int]:
        """The collection's default chunking of long documents, as set (`tokens`, `overlap`)."""
        return dict(self._manifest().chunking)

    def set_chunking(self, tokens: int | None, overlap: int | None) -> None:
        """Set the default chunking (what a writer uses when a request names none)."""
        self._check_writable()
        values = {k: v for k, v in (("tokens", tokens), ("overlap", overlap)) if v is not None}
        if not self._ready():
            self._wanted.chunking.update(values)
            return
        self._update_manifest(chunking={**self._manifest().chunking, **values})

    def indexed_fields(self) -> list[str]:
        return sorted(self._manifest().fields)

    def index_field(self, field: str, kind: str | None = None) -> bool:
        """Declare metadata field `field` (a filter path, `author.name`) for a Qdrant payload
        index: `kind` "keyword" serves equality on strings, "float" equality and ranges on
        numbers, "bool" booleans; None picks what most stored values are (keyword when there
        are none). Filters match the same documents either way. False if declared before."""
        self._check_writable()
        to_qdrant({field: {"exists": True}})  # FilterError for a field no filter can name
        if kind is not None and kind not in INDEX_KINDS:
            raise InvalidArgument(f"kind must be one of {', '.join(INDEX_KINDS)}, got {kind!r}")
        manifest = self._manifest()
        if field in manifest.fields:
            return False
        kind = kind or self._usual_kind(field)
        if not self._ready():
            self._wanted.fields[field] = kind
            return True
        self._create_field_index(field, kind)
        self._update_manifest(fields={**manifest.fields, field: kind})
        return True

    def _usual_kind(self, field: str) -> str:
        """The index kind for what `field` holds in some stored documents."""
        if not self._ready():
            return "keyword"
        flt = without_settings(to_qdrant({field: {"exists": True}}))
        found, _ = self._q("scroll", scroll_filter=flt, limit=_SAMPLE, with_payload=[layout.VIEW])
        counts = {"keyword": 0, "float": 0, "bool": 0}
        for record in found:
            value: Any = (record.payload or {}).get(layout.VIEW)
            for key in field_keys(field):
                value = value.get(layout.view_key(key)) if isinstance(value, dict) else None
            if isinstance(value, bool):
                counts["bool"] += 1
            elif isinstance(value, int | float):
                counts["float"] += 1
            elif isinstance(value, str):
                counts["keyword"] += 1
        return max(counts, key=lambda k: (counts[k], k == "keyword"))

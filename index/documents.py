"""Documents going in and hits coming out of a collection."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from index.errors import InvalidDocument
from index.limits import Limits


@dataclass(frozen=True, slots=True)
class Doc:
    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def coerce(cls, obj: Doc | dict[str, Any], limits: Limits | None = None) -> Doc:
        """A `Doc` from a Doc or a `{"id", "text", "metadata"}` dict; a missing id gets a uuid4."""
        if isinstance(obj, Doc):
            return obj
        if not isinstance(obj, dict):
            raise InvalidDocument(f"a document must be a dict or Doc, got {type(obj).__name__}")
        doc_id = obj.get("id")
        if doc_id is None:
            doc_id = uuid.uuid4().hex
        if not isinstance(doc_id, str) or not doc_id:
            raise InvalidDocument(f"document id must be a non-empty string, got {doc_id!r}")
        text = obj.get("text")
        if not isinstance(text, str):
            raise InvalidDocument(f"document {doc_id!r}: 'text' must be a string, got {text!r}")
        metadata = obj.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise InvalidDocument(
                f"document {doc_id!r}: 'metadata' must be an object, got {type(metadata).__name__}"
            )
        return cls(doc_id, text, metadata)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "metadata": self.metadata}


@dataclass(frozen=True, slots=True)
class Hit:
    id: str
    score: float  # cosine similarity (vectors are L2-normalized, metric is inner product)
    text: str
    metadata: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "score": self.score, "text": self.text, "metadata": self.metadata}

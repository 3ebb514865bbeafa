"""A Qdrant collection's own settings, what the local store keeps in manifest.json and SQLite:
the vector dimension, the encoder's fingerprint, the default chunking and the declared field
indexes. They are the payload of one reserved point (`ids.SETTINGS_POINT`), which every query
leaves out; a point works on every Qdrant version, unlike collection metadata (1.16 and later).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from semsearch.index.errors import DimensionMismatch, FingerprintMismatch
from semsearch.index.opening import fingerprint_diff

FORMAT_VERSION = 1
FORMAT_KEY = "semsearch_format"  # present on the settings point only


@dataclass
class Manifest:
    dim: int | None = None
    encoder_fingerprint: dict[str, Any] | None = None
    chunking: dict[str, int] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)  # filter field -> payload index kind

    def to_payload(self) -> dict[str, Any]:
        return {
            FORMAT_KEY: FORMAT_VERSION,
            "dim": self.dim,
            "encoder_fingerprint": self.encoder_fingerprint,
            "chunking": self.chunking,
            "fields": self.fields,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any] | None) -> Manifest | None:
        """None for a point that holds no settings."""
        if not payload or FORMAT_KEY not in payload:
            return None
        return cls(
            dim=payload.get("dim"),
            encoder_fingerprint=payload.get("encoder_fingerprint"),
            chunking=dict(payload.get("chunking") or {}),
            fields=dict(payload.get("fields") or {}),
        )


def check_compatible(
    manifest: Manifest, where: str, dim: int | None, fingerprint: dict[str, Any] | None
) -> None:
    """DimensionMismatch / FingerprintMismatch unless an encoder making `dim`-dimensional
    vectors with this `fingerprint` may use the collection (as index/opening.py's check)."""
    if dim is not None and manifest.dim is not None and dim != manifest.dim:
        raise DimensionMismatch(
            f"the Qdrant collection {where} holds {manifest.dim}-dimensional vectors, the encoder "
            f"makes {dim}; use the encoder it was built with, or embed into another collection"
        )
    old = manifest.encoder_fingerprint
    if fingerprint is not None and old is not None and fingerprint != old:
        raise FingerprintMismatch(
            f"the Qdrant collection {where} was built with another encoder "
            f"({fingerprint_diff(old, fingerprint)}); its vectors "
            "are not comparable. Use the original encoder, or embed into another collection "
            "(and delete this one in Qdrant when it is no longer needed)."
        )

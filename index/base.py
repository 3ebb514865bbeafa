"""The `VectorIndex` interface: what a collection needs from an ANN backend (txtai `ann/base.py`).

Ids are int64 vector ids handed out by the store (one per written version of a document); vectors
are L2-normalized float32 rows, so inner product is cosine similarity.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np


class VectorIndex(ABC):
    dim: int
    factory: str  # the FAISS factory string actually built ("Flat", "HNSW32", "IVF256,Flat")

    @property
    @abstractmethod
    def ntotal(self) -> int:
        """Live vectors (tombstoned ones excluded)."""

    @property
    def tombstones(self) -> int:
        return 0

    @property
    def needs_training(self) -> bool:
        return False

    def train(self, sample: np.ndarray) -> None:  # noqa: B027 - optional hook
        """Learn the coarse quantizer (IVF); a no-op for indexes that need none."""

    @abstractmethod
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add `vectors` (n, dim) under `ids` (n,) int64; ids are never reused."""

    @abstractmethod
    def remove(self, ids: np.ndarray) -> None:
        """Remove (or tombstone) these ids; ids not present are ignored."""

    @abstractmethod
    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """`(scores, ids)`, each (n, k), best first; id -1 pads missing results.

        `allowed` restricts the search to these ids (pre-filtering)."""

    @abstractmethod
    def to_bytes(self) -> tuple[dict[str, Any], bytes]:
        """`(header fields, payload)` for the snapshot file."""

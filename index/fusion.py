"""Reciprocal-rank fusion of a dense and a keyword ranking (Cormack, Clarke & Buettcher, SIGIR
2009): a document's fused score is the sum over the rankings that hold it of
`weight / (rrf_k + rank)`, ranks counted from 1. Scores of the two sides (cosine, BM25) are never
compared, only ranks, which is why no normalization is needed. Elasticsearch's `rrf` retriever,
Qdrant's `Fusion.RRF`, Weaviate's and Vespa's reciprocal-rank fusion are this formula; their
`rank_constant`/`k` is `rrf_k` (60 in the paper and in each of them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from semsearch.index.errors import InvalidArgument

MODES = ("dense", "keyword", "hybrid")
SIDES = ("dense", "keyword")


@dataclass(frozen=True)
class Fusion:
    """How `mode="hybrid"` merges its two rankings.

    `candidates`: hits taken from each side before fusing (Elasticsearch's `rank_window_size`);
    None: `max(k, 50)` for a search of `k` hits. `weights`: a side's multiplier in the sum (a side
    weighted 0 still says where it ranked a hit, but adds nothing to its score)."""

    rrf_k: int = 60
    weights: dict[str, float] = field(default_factory=lambda: {"dense": 1.0, "keyword": 1.0})
    candidates: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.rrf_k, bool) or not isinstance(self.rrf_k, int) or self.rrf_k < 1:
            raise InvalidArgument(f"rrf_k must be an integer >= 1, got {self.rrf_k!r}")
        unknown = set(self.weights) - set(SIDES)
        if unknown:
            raise InvalidArgument(
                f"weights name the sides {', '.join(SIDES)}; unknown: {', '.join(sorted(unknown))}"
            )
        merged = {side: float(self.weights.get(side, 1.0)) for side in SIDES}
        for side, weight in merged.items():
            if not (math.isfinite(weight) and weight >= 0):
                raise InvalidArgument(f"weights[{side!r}] must be finite and >= 0, got {weight}")
        if not any(merged.values()):
            raise InvalidArgument("at least one of the weights must be above 0")
        object.__setattr__(self, "weights", merged)
        if self.candidates is not None and (
            isinstance(self.candidates, bool)
            or not isinstance(self.candidates, int)
            or self.candidates < 1
        ):
            raise InvalidArgument(f"candidates must be an integer >= 1, got {self.candidates!r}")

    def depth(self, k: int) -> int:
        """Hits taken from each side for a search of `k` hits."""
        return self.candidates if self.candidates is not None else max(k, 50)


@dataclass(frozen=True, slots=True)
class Found:
    """Where one side ranked a hit: `rank` from 1, and that side's own score (cosine, BM25)."""

    rank: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "score": self.score}


@dataclass(frozen=True, slots=True)
class Fused:
    vid: int
    score: float
    found_by: dict[str, Found]


def fuse(rankings: dict[str, tuple[np.ndarray, np.ndarray]], fusion: Fusion) -> list[Fused]:
    """`rankings[side] = (vids, scores)`, each best first; every document any side holds, by
    fused score, best first. Ties go to the better dense rank, then keyword rank, then vid."""
    found: dict[int, dict[str, Found]] = {}
    for side in SIDES:
        if side not in rankings:
            continue
        vids, scores = rankings[side]
        for rank, (vid, score) in enumerate(zip(vids.tolist(), scores.tolist(), strict=True), 1):
            found.setdefault(int(vid), {})[side] = Found(rank, float(score))
    fused = [
        Fused(
            vid,
            sum(fusion.weights[s] / (fusion.rrf_k + f.rank) for s, f in sides.items()),
            sides,
        )
        for vid, sides in found.items()
    ]
    last = len(found) + 1  # ranks past any side's list for a side that missed the document

    def order(item: Fused) -> tuple[float, int, int, int]:
        dense = item.found_by.get("dense")
        keyword = item.found_by.get("keyword")
        return (
            -item.score,
            dense.rank if dense else last,
            keyword.rank if keyword else last,
            item.vid,
        )

    return sorted(fused, key=order)

"""How a collection's FAISS index is chosen and tuned.

Index types, in FAISS's factory spelling (inner product on unit vectors):

    auto                        Flat below `flat_max` vectors, HNSW32 from there on
    Flat                        exact search over float32 vectors (4 bytes a dimension)
    HNSW{M}                     a graph of M links a node over float32 vectors
    HNSW{M},SQ8                 the same graph over 8-bit scalar-quantized vectors (1 byte a dim)
    IVF, IVF{nlist},Flat        inverted lists of float32 vectors ("IVF" alone sizes nlist)
    IVF{nlist},SQ8              inverted lists of 8-bit scalar-quantized residuals
    IVF{nlist},PQ{m}            inverted lists of product-quantized residuals (m bytes a vector)
    IVF{nlist},PQ{m},Refine(X)  the PQ search's best `refine_k_factor * k` re-scored on a second
                                copy of the vectors, X = SQ8 (1 byte a dim) or Flat (float32)

A type that learns from the data (IVF's lists, SQ8's ranges, PQ's codebooks) serves from Flat
until the collection holds `min_vectors` to train on, then is built from a sample of them.
docs/scaling.md has each type's recall, speed and bytes per vector as measured here.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

_HNSW = re.compile(r"^HNSW(\d+)(?:,(Flat|SQ8))?$", re.IGNORECASE)
_IVF = re.compile(
    r"^IVF(\d*)(?:,(Flat|SQ8|PQ\d+))?(?:,(RFlat|Refine\((?:Flat|SQ8)\)))?$", re.IGNORECASE
)
_PQ_CENTROIDS = 256  # 8-bit PQ codes: each sub-quantizer learns 256 centroids
_TRAIN_PER_CENTROID = 256  # FAISS's own cap on k-means training points per centroid
_CODEC_TRAIN = _TRAIN_PER_CENTROID * _PQ_CENTROIDS  # PQ's sample as FAISS caps it; SQ8's too
_EXPECTED = (
    "'auto', 'Flat', 'HNSW<M>' (e.g. HNSW32), 'HNSW<M>,SQ8', 'IVF', 'IVF<nlist>,Flat', "
    "'IVF<nlist>,SQ8', 'IVF<nlist>,PQ<m>' or 'IVF<nlist>,PQ<m>,Refine(SQ8|Flat)'"
)


class Parts(NamedTuple):
    """A canonical index type taken apart: ("IVF", 1024, "PQ48", "SQ8") for
    "IVF1024,PQ48,Refine(SQ8)"; size is M for HNSW, nlist for IVF (0: sized from the data)."""

    family: str  # "auto", "Flat", "HNSW" or "IVF"
    size: int
    codec: str  # "Flat", "SQ8" or "PQ{m}"
    refine: str | None  # "Flat", "SQ8" or None

    @property
    def pq_m(self) -> int:
        return int(self.codec[2:]) if self.codec.startswith("PQ") else 0


@dataclass(frozen=True)
class IndexConfig:
    """`index_type` is one of the types above; the rest tunes how it is built and searched."""

    index_type: str = "auto"
    flat_max: int = 50_000  # "auto" stays exact below this many vectors, HNSW32 from here on
    # On 20k real MiniLM vectors: recall@10 0.973 at efConstruction 80 / efSearch 64, 0.25 ms a
    # query; efConstruction 200 adds 0.005 recall for 2.4x the build time.
    ef_construction: int = 80
    ef_search: int = 64
    nprobe: int = 0  # 0 = nlist // 8 (at least 8)
    ivf_min_train_per_list: int = 39  # FAISS warns below 39 training points per centroid
    # SQ8 learns each dimension's range from a sample. Flat SQ8 over 20k real MiniLM vectors,
    # ranges from the first 1,000 / 5,000 / all 20,000: recall@10 0.990 / 0.995 / 0.996.
    quantizer_min_train: int = 5_000
    # Refine(...): candidates re-scored, as a multiple of k. IVF1024,PQ48,Refine(SQ8) on 100k
    # vectors at nprobe 128: recall@10 0.934 at 4, 0.951 at 8, 0.958 at 16.
    refine_k_factor: int = 8
    compact_ratio: float = 0.2  # tombstones (HNSW, Refine): rebuild past this share of the index
    compact_min: int = 1_000
    exact_filter_max: int = 2_048  # filters matching at most this many docs are searched exactly
    # FAISS's OpenMP threads (process-wide; 0 = leave as is). One query gains nothing from them,
    # and on shared cores libgomp collapses: 200 HNSW searches took 0.08 s on 2 threads, 0.003 on 1.
    threads: int = 1

    def __post_init__(self) -> None:
        kind = normalize_type(self.index_type)  # raises on an unknown type
        object.__setattr__(self, "index_type", kind)
        if self.ef_search < 1 or self.ef_construction < 1:
            raise ValueError(
                f"ef_search and ef_construction must be >= 1, got {self.ef_search}, "
                f"{self.ef_construction}"
            )
        if not 0.0 < self.compact_ratio <= 1.0:
            raise ValueError(f"compact_ratio must be in (0, 1], got {self.compact_ratio}")
        if self.refine_k_factor < 1 or self.quantizer_min_train < 1:
            raise ValueError(
                f"refine_k_factor and quantizer_min_train must be >= 1, got "
                f"{self.refine_k_factor}, {self.quantizer_min_train}"
            )

    def factory_for(self, n: int) -> str:
        """FAISS factory string for `n` vectors (a trained type stays Flat until it can be
        trained: `min_vectors`)."""
        kind = self.index_type
        if kind == "auto":
            return "Flat" if n < self.flat_max else "HNSW32"
        if kind == "IVF":
            kind = f"IVF{self.nlist_for(n)},Flat"
        return kind if n >= self.min_vectors(kind) else "Flat"

    def min_vectors(self, factory: str) -> int:
        """Vectors `factory` trains on before it is built: 39 a centroid for IVF's lists and
        PQ's codebooks, `quantizer_min_train` for SQ8's ranges and PQ; 0 if it learns nothing."""
        parts = split_type(factory)
        need = parts.size * self.ivf_min_train_per_list if parts.family == "IVF" else 0
        if parts.codec == "SQ8" or parts.refine == "SQ8":
            need = max(need, self.quantizer_min_train)
        if parts.pq_m:
            need = max(need, _PQ_CENTROIDS * self.ivf_min_train_per_list, self.quantizer_min_train)
        return need

    def train_size(self, n: int) -> int:
        """How many of `n` vectors to train `factory_for(n)` on: what FAISS would use of them
        (256 a centroid for IVF's lists and PQ's codebooks), as many for SQ8's ranges."""
        parts = split_type(self.factory_for(n))
        want = _TRAIN_PER_CENTROID * parts.size if parts.family == "IVF" else 0
        if parts.pq_m or "SQ8" in (parts.codec, parts.refine):
            want = max(want, _CODEC_TRAIN)
        return min(n, want)

    def nlist_for(self, n: int) -> int:
        parts = split_type(self.index_type)
        assert parts.family == "IVF", self.index_type
        if parts.size:
            return parts.size
        return int(min(65_536, max(16, 4 * math.sqrt(max(n, 1)))))

    def nprobe_for(self, nlist: int) -> int:
        return min(nlist, self.nprobe or max(8, nlist // 8))

    def check_dim(self, dim: int) -> None:
        """ValueError if vectors of `dim` cannot go into this type (PQ{m} needs m to divide it)."""
        m = split_type(self.index_type).pq_m
        if m and dim % m:
            fits = [d for d in range(8, dim + 1) if dim % d == 0]
            raise ValueError(
                f"index type {self.index_type} cuts each vector into {m} parts, but the "
                f"dimension {dim} is not a multiple of {m}; use PQ<m> with m one of {fits}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def split_type(kind: str) -> Parts:
    """The parts of a canonical type or factory string ("auto", "HNSW32,SQ8", "IVF256,Flat")."""
    if kind in ("auto", "Flat"):
        return Parts(kind, 0, "Flat", None)
    match = _HNSW.match(kind) or _IVF.match(kind)
    assert match is not None, f"not a canonical index type: {kind!r}"
    family = "HNSW" if kind.startswith("HNSW") else "IVF"
    codec = match.group(2) or "Flat"
    refine = match.group(3) if family == "IVF" else None
    if refine is not None:
        refine = "Flat" if refine.upper() in ("RFLAT", "REFINE(FLAT)") else "SQ8"
    return Parts(family, int(match.group(1) or 0), codec, refine)


def normalize_type(index_type: str) -> str:
    """Canonical spelling of an index type; ValueError naming the accepted ones otherwise."""
    text = index_type.strip().replace(" ", "")
    if text.lower() in ("auto", "flat"):
        return text.lower().replace("flat", "Flat")
    hnsw, ivf = _HNSW.match(text), _IVF.match(text)
    if hnsw:
        m, codec = hnsw.groups()
        return f"HNSW{m},SQ8" if codec and codec.upper() == "SQ8" else f"HNSW{m}"
    if not ivf:
        raise ValueError(f"unknown index type {index_type!r}; expected {_EXPECTED}")
    nlist, codec, refine = ivf.group(1), (ivf.group(2) or "Flat").upper(), ivf.group(3)
    codec = "Flat" if codec == "FLAT" else codec
    if (nlist and int(nlist) < 1) or (codec.startswith("PQ") and int(codec[2:]) < 1):
        raise ValueError(f"index type {index_type!r}: nlist and PQ's m must be at least 1")
    if refine and not codec.startswith("PQ"):
        raise ValueError(
            f"index type {index_type!r}: Refine(...) re-scores product-quantized candidates; it "
            f"follows PQ<m>, as in IVF1024,PQ48,Refine(SQ8) ({codec} needs no re-scoring)"
        )
    if not nlist:
        if codec != "Flat":
            raise ValueError(
                f"index type {index_type!r} needs its number of lists: write IVF<nlist>,{codec}, "
                f"e.g. IVF1024,{codec} (about 4 * sqrt(N) lists for N vectors)"
            )
        return "IVF"
    kind = f"IVF{nlist},{codec}"
    if refine:
        kind += ",Refine(Flat)" if refine.upper() in ("RFLAT", "REFINE(FLAT)") else ",Refine(SQ8)"
    return kind

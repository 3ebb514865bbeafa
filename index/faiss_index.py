"""`VectorIndex` over FAISS: Flat (exact), HNSW{M}, IVF{nlist},Flat; inner product on unit vectors.

The store's int64 vector ids are FAISS's labels (through `IndexIDMap`, except IVF, which keeps
ids natively). Flat and IVF remove vectors for real; HNSW cannot, so removed ids become tombstones
excluded at query time by an `IDSelector` (the collection rebuilds once tombstones pile up).
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from semsearch.index.base import VectorIndex
from semsearch.index.config import IndexConfig

_MAX_EF = 1_024


class FaissIndex(VectorIndex):
    def __init__(self, dim: int, factory: str, config: IndexConfig, index: Any = None) -> None:
        self.dim = dim
        self.factory = factory
        self.config = config
        if config.threads:
            faiss.omp_set_num_threads(config.threads)
        if index is None:
            inner = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
            if factory.startswith("HNSW"):
                inner.hnsw.efConstruction = config.ef_construction
            # IVF stores ids itself; IndexIDMap over it would corrupt its id map on remove_ids
            # (IDMap assumes the sub-index shifts rows down, as Flat does and IVF does not).
            index = inner if factory.startswith("IVF") else faiss.IndexIDMap(inner)
        self._index = index
        self._inner = faiss.downcast_index(index.index) if hasattr(index, "id_map") else index
        self._dead: set[int] = set()
        self._dead_sel: Any = None  # cached IDSelectorNot over the tombstones

    @property
    def is_hnsw(self) -> bool:
        return self.factory.startswith("HNSW")

    @property
    def is_ivf(self) -> bool:
        return self.factory.startswith("IVF")

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal) - len(self._dead)

    @property
    def tombstones(self) -> int:
        return len(self._dead)

    @property
    def needs_training(self) -> bool:
        return not self._index.is_trained

    def train(self, sample: np.ndarray) -> None:
        if self.needs_training:
            self._index.train(np.ascontiguousarray(sample, dtype=np.float32))

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            vectors = np.ascontiguousarray(vectors, dtype=np.float32)
            self._index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> None:
        if not len(ids):
            return
        if self.is_hnsw:
            self._dead.update(int(i) for i in ids)
            self._dead_sel = None
        else:
            self._index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64))

    def _params(self, k: int, allowed: np.ndarray | None, widen: int = 1) -> tuple[Any, list[Any]]:
        """Search parameters with the id selector; the list keeps SWIG objects alive meanwhile."""
        keep: list[Any] = []
        sel = None
        if allowed is not None:
            if self._dead:
                allowed = np.setdiff1d(allowed, np.fromiter(self._dead, dtype=np.int64))
            sel = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
        elif self._dead:
            if self._dead_sel is None:
                batch = faiss.IDSelectorBatch(np.fromiter(self._dead, dtype=np.int64))
                self._dead_sel = (faiss.IDSelectorNot(batch), batch)
            sel = self._dead_sel[0]
            keep.append(self._dead_sel)
        keep.append(sel)
        # A selective filter hides most of what a plain search visits: widen the search to match.
        share = 1.0 if allowed is None else max(len(allowed), 1) / max(self._index.ntotal, 1)
        if self.is_hnsw:
            ef = max(self.config.ef_search, k)
            ef = int(min(max(ef, ef / share), max(_MAX_EF, k)) * widen)
            return faiss.SearchParametersHNSW(sel=sel, efSearch=ef), keep
        if self.is_ivf:
            nlist = self._inner.nlist
            nprobe = self.config.nprobe_for(nlist)
            nprobe = int(min(nlist, max(nprobe, nprobe / share)))
            return faiss.SearchParametersIVF(sel=sel, nprobe=nprobe), keep
        return (faiss.SearchParameters(sel=sel) if sel is not None else None), keep

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)  # (n, dim)
        if self._index.ntotal == 0 or (allowed is not None and len(allowed) == 0):
            n = len(queries)
            return np.full((n, k), -np.inf, np.float32), np.full((n, k), -1, np.int64)
        params, _keep = self._params(k, allowed)
        scores, ids = self._index.search(queries, k, params=params)
        if self.is_hnsw:
            # Tombstones and selectors hide graph nodes; a search can end short of k. Widen it.
            want = min(k, self.ntotal if allowed is None else len(allowed))
            for widen in (4, 16):
                if ((ids >= 0).sum(axis=1) >= want).all():
                    break
                params, _keep = self._params(k, allowed, widen)
                scores, ids = self._index.search(queries, k, params=params)
        return scores, ids

    def to_bytes(self) -> tuple[dict[str, Any], bytes]:
        dead = np.fromiter(sorted(self._dead), dtype=np.int64)
        faiss_bytes = faiss.serialize_index(self._index).tobytes()
        header = {"factory": self.factory, "dim": self.dim, "n_dead": len(dead)}
        return header, dead.tobytes() + faiss_bytes

    @classmethod
    def from_bytes(cls, header: dict[str, Any], payload: bytes, config: IndexConfig) -> FaissIndex:
        n_dead = int(header["n_dead"])
        dead = np.frombuffer(payload[: 8 * n_dead], dtype=np.int64)
        index = faiss.deserialize_index(np.frombuffer(payload[8 * n_dead :], dtype=np.uint8))
        out = cls(int(header["dim"]), str(header["factory"]), config, index=index)
        out._dead = set(int(i) for i in dead)
        return out

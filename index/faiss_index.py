"""`VectorIndex` over FAISS: the types of index/config.py; inner product on unit vectors.

The store's int64 vector ids are FAISS's labels: IVF keeps ids natively, the others go through
`IndexIDMap`. Flat and IVF remove vectors for real. HNSW graphs cannot, nor can `IndexRefine`,
whose second copy of the vectors is addressed by row number; there removed ids become tombstones
excluded at query time by an `IDSelector` (the collection rebuilds once tombstones pile up).
`IndexRefine` hands the IVF under it only `base_index_params`, and the IVF sees row numbers, not
our ids: the selector goes there, translated through the id map.

Scores are inner products as the index computes them: exact for Flat, HNSW{M}, IVF{nlist},Flat
and Refine(Flat); on the 8-bit copy for SQ8 and Refine(SQ8) (within about 1e-3); on the PQ codes
for IVF{nlist},PQ{m} (coarser).
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from semsearch.index.base import VectorIndex
from semsearch.index.config import IndexConfig, split_type
from semsearch.index.errors import InvalidArgument

_MAX_EF = 1_024


class FaissIndex(VectorIndex):
    def __init__(self, dim: int, factory: str, config: IndexConfig, index: Any = None) -> None:
        try:
            config.check_dim(dim)  # before any vector is written under a type that cannot take it
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        self.dim = dim
        self.factory = factory
        self.config = config
        self._parts = split_type(factory)
        if config.threads:
            faiss.omp_set_num_threads(config.threads)
        if index is None:
            inner = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
            if self.is_hnsw:
                inner.hnsw.efConstruction = config.ef_construction
            if self._parts.pq_m:
                # Polysemous code ordering serves a Hamming pre-filter we never use, and took 98 s
                # of IVF256,PQ48's 102 s of training on 20k vectors.
                faiss.downcast_index(faiss.extract_index_ivf(inner)).do_polysemous_training = False
            # IVF stores ids itself; IndexIDMap over it would corrupt its id map on remove_ids
            # (IDMap assumes the sub-index shifts rows down, as Flat does and IVF does not).
            native = self.is_ivf and not self.is_refined
            index = inner if native else faiss.IndexIDMap(inner)
        self._index = index
        self._nlist = int(faiss.extract_index_ivf(index).nlist) if self.is_ivf else 0
        self._dead: set[int] = set()
        self._dead_sel: Any = None  # cached IDSelectorNot over the tombstones

    @property
    def is_hnsw(self) -> bool:
        return self.factory.startswith("HNSW")

    @property
    def is_ivf(self) -> bool:
        return self.factory.startswith("IVF")

    @property
    def is_refined(self) -> bool:
        return self._parts.refine is not None

    @property
    def keeps_tombstones(self) -> bool:
        """Removed ids stay in FAISS, hidden by a selector, until a rebuild (HNSW, Refine)."""
        return self.is_hnsw or self.is_refined

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
        if self.keeps_tombstones:
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
            nprobe = self.config.nprobe_for(self._nlist)
            nprobe = int(min(self._nlist, max(nprobe, nprobe / share) * widen))
            if not self.is_refined:
                return faiss.SearchParametersIVF(sel=sel, nprobe=nprobe), keep
            if sel is not None:  # the IVF under IndexRefine sees row numbers: translate
                sel = faiss.IDSelectorTranslated(self._index.id_map, sel)
            base = faiss.SearchParametersIVF(sel=sel, nprobe=nprobe)
            params = faiss.IndexRefineSearchParameters(
                k_factor=float(self.config.refine_k_factor), base_index_params=base
            )
            keep += [sel, base]
            return params, keep
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
        if self.keeps_tombstones:
            # Tombstones and selectors hide graph nodes (or list entries): a search can end short
            # of k. Widen it.
            want = min(k, self.ntotal if allowed is None else len(allowed))
            for widen in (4, 16):
                if ((ids >= 0).sum(axis=1) >= want).all():
                    break
                params, _keep = self._params(k, allowed, widen)
                scores, ids = self._index.search(queries, k, params=params)
        return scores, ids

    def to_bytes(self) -> tuple[dict[str, Any], bytes]:
        """The tombstones, then FAISS's serialization, written chunk by chunk into one buffer
        (a bytearray): while a snapshot is taken the process holds the index and one copy of it.
        `faiss.serialize_index` made two (its array, then `bytes`): 3.0x the index's size at the
        peak, measured with bench/bench_index_types.py --memory."""
        dead = np.fromiter(sorted(self._dead), dtype=np.int64)
        payload = bytearray(dead.tobytes())

        def write(chunk: bytes) -> int:
            payload.extend(chunk)
            return len(chunk)

        faiss.write_index(self._index, faiss.PyCallbackIOWriter(write))
        header = {"factory": self.factory, "dim": self.dim, "n_dead": len(dead)}
        return header, payload  # bytes-like; not copied again

    @classmethod
    def from_bytes(cls, header: dict[str, Any], payload: bytes, config: IndexConfig) -> FaissIndex:
        n_dead = int(header["n_dead"])
        view = memoryview(payload)
        dead = np.frombuffer(view[: 8 * n_dead], dtype=np.int64)
        at = 8 * n_dead

        def read(n: int) -> bytes:  # chunks of the payload, not a copy of all of it at once
            nonlocal at
            chunk = view[at : at + n].tobytes()
            at += len(chunk)
            return chunk

        index = faiss.read_index(faiss.PyCallbackIOReader(read))
        out = cls(int(header["dim"]), str(header["factory"]), config, index=index)
        out._dead = set(int(i) for i in dead)
        return out

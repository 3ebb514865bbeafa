"""The stages `index build --ray` runs on Ray Data, and what they pass each other.

read_file (tasks) -> EmbedRecords (an actor pool, one encoder each) -> the driver, which writes.

Each row carries one pickled item (the readers' `Record`, `BadRow` or `SkippedFile`; after the
encoder an `Embedded` or `Unchanged` in a record's place; `Failed` where a stage raised) and the
input bytes reading it consumed,
for the driver's progress bar. The actors decide what to embed as the local pipeline does
(index/ingest/pipeline.py: `record_units`, `by_parent`, `stored_as_read`), asking `StoredUnits`, an
actor beside the collection on the driver's node, for what is stored.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import socket
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semsearch.index.documents import Doc
from semsearch.index.ingest.pipeline import (
    BuildOptions,
    Embedder,
    by_parent,
    encode_longest_first,
    record_units,
    stored_as_read,
)
from semsearch.index.ingest.readers import Progress, ReaderOptions, Record, read_files
from semsearch.index.persistence import DATABASE
from semsearch.index.store import Store


@dataclass(frozen=True)
class EncoderSpec:
    """The encoder every actor loads: the driver's, as it resolved it (`auto`: the backend it
    chose; the artifact directory as a path), and its fingerprint, which each actor checks."""

    backend: str
    model_dir: Path | None
    onnx_options: Any  # encoder.onnx.embedder.OnnxOptions, None for torch
    fingerprint: dict[str, Any]

    @classmethod
    def of(cls, embedder: Any, model_dir: Path | None, onnx_options: Any) -> EncoderSpec:
        """The spec of the driver's `embedder`, loaded from `model_dir` with `onnx_options`."""
        if embedder.backend == "torch":
            onnx_options = None
        elif onnx_options is not None and onnx_options.artifact_dir is None:
            from semsearch.encoder.onnx.embedder import default_artifact_dir

            onnx_options = dataclasses.replace(onnx_options, artifact_dir=default_artifact_dir())
        return cls(embedder.backend, model_dir, onnx_options, embedder.fingerprint())

    def load(self, threads: int) -> Embedder:
        from semsearch.encoder import load_embedder

        embedder = load_embedder(self.model_dir, self.backend, threads, self.onnx_options)
        here = embedder.fingerprint()
        if here != self.fingerprint:
            keys = sorted(
                k
                for k in here.keys() | self.fingerprint.keys()
                if here.get(k) != self.fingerprint.get(k)
            )
            differ = ", ".join(
                f"{k} {here.get(k)!r} (driver: {self.fingerprint.get(k)!r})" for k in keys
            )
            raise ValueError(
                f"the Ray worker on {socket.gethostname()} loaded another encoder than the driver: "
                f"{differ}; give every node the same model files at the same paths "
                "(--model-dir, SEMSEARCH_MODELS_DIR)"
            )
        return embedder


@dataclass(frozen=True)
class Embedded:
    """A record to write: its units (whole, or chunks) and their vectors (n, dim)."""

    parent: str
    units: list[Doc]
    vectors: np.ndarray
    updated: bool  # it was stored before, otherwise


@dataclass(frozen=True)
class Unchanged:
    """A record stored exactly as read: nothing was embedded."""

    record: Record
    units: int


@dataclass(frozen=True)
class Failed:
    """What a reader or an encoder raised, for the driver to raise in its place in the input
    order: Ray Data would hand the driver its own wrapper, the exception's type lost (a named
    input unreadable, model files missing on a node: each an expected failure of the build)."""

    error: Exception


def _failed(exc: Exception) -> bytes:
    """`exc` as a `Failed` row, the worker's traceback added to it as a note."""
    trace = "".join(traceback.format_exception(exc)).rstrip()
    exc.add_note(f"raised in a Ray worker on {socket.gethostname()}:\n{trace}")
    try:
        return _dump(Failed(exc))
    except (pickle.PicklingError, TypeError, AttributeError):  # an exception pickle refuses
        return _dump(Failed(RuntimeError(f"{type(exc).__name__}: {exc}\n{trace}")))


def read_file(row: dict[str, Any], roots: list[Path], options: ReaderOptions) -> Iterator[Any]:
    """Ray Data stage (`flat_map`): the rows of the file `row["path"]`, read as the local pipeline
    reads it (the same ids: a folder's files are named relative to their root in `roots`).

    Bytes the readers consume after a file's last row (all of them, for a file without rows) come
    as a row with an empty item, so the bytes of a file always add up to its size."""
    progress, done = Progress(), 0
    path = Path(os.fsdecode(row["path"]))  # bytes: a file name need not be valid UTF-8
    try:
        for item in read_files([path], roots, options, progress):
            yield {"item": _dump(item), "nbytes": progress.bytes_read - done}
            done = progress.bytes_read
    except Exception as exc:  # handed on whole, see Failed
        yield {"item": _failed(exc), "nbytes": progress.bytes_read - done}
        return
    if progress.bytes_read > done:
        yield {"item": b"", "nbytes": progress.bytes_read - done}


def local_units(index_dir: str) -> Store:
    """What `StoredUnits` reads for a local collection: its SQLite store, which the driver writes
    through its `Collection`."""
    return Store(Path(index_dir) / DATABASE)


class StoredUnits:
    """Ray actor on the driver's node: what is stored of records (`families`, as a
    `CollectionBackend` answers it) from what `opener()` opens: the local store (`local_units`),
    or another backend's read-only handle."""

    def __init__(self, opener: Callable[[], Any]) -> None:
        self.units = opener()

    def families(self, parents: Sequence[str]) -> dict[str, Doc]:
        return self.units.families(parents)


class EmbedRecords:
    """Ray Data stage on an actor pool, one encoder per actor: each record's units, embedded
    longest first unless stored exactly as read; other rows pass through."""

    def __init__(
        self, encoder: EncoderSpec, options: BuildOptions, threads: int, stored: Any
    ) -> None:
        import ray

        self.ray = ray
        self.encoder, self.threads = encoder, threads
        self._embedder: Embedder | None = None
        self.options = options
        self.stored = stored  # a StoredUnits actor

    @property
    def embedder(self) -> Embedder:
        """Loaded with the first batch, not in `__init__`: a model that fails to load is then
        that batch's error, which reaches the driver as itself (`Failed`), not as an actor that
        died."""
        if self._embedder is None:
            self._embedder = self.encoder.load(self.threads)
        return self._embedder

    def __call__(self, batch: Any) -> Any:
        nbytes = batch.column("nbytes").to_pylist()
        try:
            return self._embed(batch.column("item").to_pylist(), nbytes)
        except Exception as exc:  # handed on whole, see Failed
            return _table([_failed(exc)], [sum(nbytes)], [0.0])

    def _embed(self, items: list[bytes], nbytes: list[int]) -> Any:
        records: dict[int, Record] = {}
        for i, item in enumerate(items):
            row = pickle.loads(item) if item else None
            if isinstance(row, Record):
                records[i] = row
        units = {i: list(record_units(r, self.embedder, self.options)) for i, r in records.items()}
        parents = [r.id for r in records.values()]
        stored = by_parent(self.ray.get(self.stored.families.remote(parents))) if parents else {}
        changed = [
            i for i, r in records.items() if not stored_as_read(units[i], stored.get(r.id, {}))
        ]
        for i in records.keys() - set(changed):
            items[i] = _dump(Unchanged(records[i], len(units[i])))
        started = time.perf_counter()
        todo = [u for i in changed for u in units[i]]
        ordered, vectors = encode_longest_first(self.embedder, todo, self.options.batch_size)
        seconds = time.perf_counter() - started
        row_of = {id(unit): k for k, unit in enumerate(ordered)}  # by object: ids may repeat
        for i in changed:
            parent = records[i].id
            rows = [row_of[id(u)] for u in units[i]]
            items[i] = _dump(Embedded(parent, units[i], vectors[rows], bool(stored.get(parent))))
        return _table(items, nbytes, [seconds] + [0.0] * (len(items) - 1))


def _table(items: list[bytes], nbytes: list[int], embed_s: list[float]) -> Any:
    """A block of embedded rows: pickled items, the input bytes each stands for, and the encoder's
    seconds (a batch's on its first row)."""
    import pyarrow as pa

    return pa.table(
        {
            "item": pa.array(items, type=pa.large_binary()),
            "nbytes": pa.array(nbytes, type=pa.int64()),
            "embed_s": pa.array(embed_s, type=pa.float64()),
        }
    )


def _dump(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)

"""`index build --ray`: the batch indexer of index/ingest/pipeline.py on Ray Data.

The same readers, units (whole records, or chunks), change detection and writes as the local
pipeline, spread out: the input files are a dataset read by Ray tasks on the driver's node (one
record per document, the same ids), an actor pool (`workers` actors, one encoder each with
`threads_per_worker` intra-op threads) cuts each batch of records into units, asks what is stored
(`StoredUnits`, beside the collection), embeds what is not stored exactly as read, longest first,
and the driver writes the results in input order (Ray Data's `preserve_order`), one transaction
per window of `batch_size * window_batches` units (index/ingest/ray_stages.py has the stages).

Resumable as the local pipeline: every window is one transaction and a record stored as read is
not embedded again, so a driver killed mid-run and rerun ends with every document once, with the
vectors a local build gives. The collection is written only through `upsert` and `delete` (for
`sync`) and read through `families`, `iter_ids` and `count`, so another backend can take its place.

An id repeated across input files ends as its last version read, as locally: when the actors
skipped that version as stored while the driver had already written an earlier one in this run,
the driver embeds it again at the end (`_Writer.stale`).

What a reader or an encoder raises (a named input unreadable, model files missing on a node) is
raised by the driver as itself, where its row falls in the input order; an actor that dies fails
the build (it is not restarted). Either way a rerun resumes.

Without an address a local Ray is started for the build (CPUs for the actors and a reader) and
shut down after; with one, the build joins that cluster, and must run on one of its nodes: the
collection and the inputs are read there; every node needs the same model files at the same
paths. A Ray session this process already has is used as it is.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import pickle
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from semsearch.index.backend import CollectionBackend
from semsearch.index.ingest.documents import SkippedFile
from semsearch.index.ingest.pipeline import (
    BuildOptions,
    BuildReport,
    Embedder,
    ProgressBar,
    advance_bar,
    note_skip,
    open_for_build,
    prepare_directory,
    sync_deletions,
)
from semsearch.index.ingest.ray_session import RayOptions, plan_workers, ray_session
from semsearch.index.ingest.ray_stages import (
    Embedded,
    EmbedRecords,
    EncoderSpec,
    Failed,
    StoredUnits,
    Unchanged,
    local_units,
    read_file,
)
from semsearch.index.ingest.readers import BadRow, Progress, Record, input_files, read_inputs

log = logging.getLogger(__name__)

BLOCK_BYTES = 256 << 10  # Ray Data blocks: less than one window's vectors (512 x 384 x 4 bytes)
FILES_PER_WORKER = 8  # input files are split into up to this many blocks per actor (read tasks)


def build_index_ray(
    inputs: Sequence[str | Path],
    index_dir: str | Path,
    embedder: Embedder,
    encoder: EncoderSpec,
    options: BuildOptions | None = None,
    ray_options: RayOptions | None = None,
    on_bad_row: Callable[[BadRow], None] | None = None,
    bar: Callable[[int], ProgressBar] | None = None,
    on_skipped_file: Callable[[SkippedFile], None] | None = None,
) -> BuildReport:
    """Index `inputs` into the collection at `index_dir` on Ray; see the module docstring.

    `embedder` is the driver's encoder (the collection's dimension and fingerprint; `reindex`),
    `encoder` what each actor loads (`EncoderSpec.of(embedder, ...)`); the callbacks are
    `pipeline.build_index`'s."""
    options = options or BuildOptions()
    ray_options = ray_options or RayOptions()
    report = BuildReport()
    started = time.perf_counter()
    index_dir = Path(index_dir)
    roots = [Path(p) for p in inputs]
    progress = Progress()
    read_inputs(roots, options.reader, progress)  # refuses unsupported inputs, sums their bytes
    files = input_files(roots)
    prepare_directory(index_dir, embedder, options, report)
    pbar = bar(progress.total_bytes) if bar is not None else None
    with ray_session(ray_options) as ray, open_for_build(index_dir, embedder, options) as col:
        workers = plan_workers(ray, ray_options)
        threads = ray_options.threads_per_worker
        log.info("indexing on Ray: %d encoder actor(s), %d thread(s) each", workers, threads)
        here = ray.get_runtime_context().get_node_id()
        lookups = (
            options.store.lookups
            if options.store is not None
            else functools.partial(local_units, str(index_dir.resolve()))
        )
        stored = _stored_units(ray, lookups, here)
        try:
            stages = _Stages(ray, encoder, options, workers, threads, stored, here)
            writer = _Writer(col, options, report, on_bad_row, on_skipped_file)
            for block in stages.run(files, roots) if files else ():
                writer.take(block)
                if pbar is not None:
                    advance_bar(pbar, sum(block.column("nbytes").to_pylist()), report, started)
            writer.flush()
            if writer.stale:
                log.info("embedding %d records again: their ids repeat", len(writer.stale))
                for block in stages.again(list(writer.stale.values())):
                    writer.take(block, again=True)
                writer.flush()
            if pbar is not None:
                advance_bar(pbar, 0, report, started)  # the last window's count
        finally:
            ray.kill(stored)
        if options.sync:
            sync_deletions(col, writer.seen, report)
        report.count = col.count()
    if pbar is not None:
        pbar.close()
    report.seconds = time.perf_counter() - started
    return report


def _stored_units(ray: Any, opener: Callable[[], Any], node: str) -> Any:
    """A `StoredUnits` actor on the driver's node (where the collection is), a few lookups at a
    time (the local store: a SQLite connection per thread)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    actor = ray.remote(StoredUnits).options(
        num_cpus=0,
        max_concurrency=4,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
    )
    return actor.remote(opener)


class _Stages:
    """The datasets of one build: input files -> rows -> embedded rows, in input order."""

    def __init__(
        self,
        ray: Any,
        encoder: EncoderSpec,
        options: BuildOptions,
        workers: int,
        threads: int,
        stored: Any,
        node: str,
    ) -> None:
        self.ray, self.options, self.workers, self.threads = ray, options, workers, threads
        self.embed_kwargs = {
            "encoder": encoder,
            "options": options,
            "threads": threads,
            "stored": stored,
        }
        self.window = options.batch_size * options.window_batches
        # Read tasks run beside the driver: the inputs need not be on the other nodes.
        self.here = {"ray.io/node-id": node}

    def run(self, files: list[Path], roots: list[Path]) -> Iterable[Any]:
        blocks = max(1, min(len(files), FILES_PER_WORKER * self.workers))
        paths = self.ray.data.from_items(
            [{"path": os.fsencode(f)} for f in files], override_num_blocks=blocks
        )
        # flat_map, not map_batches: Ray Data would fuse that into the actors, reading each
        # input file on one of them.
        rows = paths.flat_map(
            read_file,
            fn_kwargs={"roots": roots, "options": self.options.reader},
            label_selector=self.here,
        )
        return self._embedded(rows)

    def again(self, records: list[Record]) -> Iterable[Any]:
        items = [{"item": pickle.dumps(r), "nbytes": 0} for r in records]
        return self._embedded(self.ray.data.from_items(items))

    def _embedded(self, rows: Any) -> Iterable[Any]:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated")
            out = rows.map_batches(
                EmbedRecords,
                compute=self.ray.data.ActorPoolStrategy(size=self.workers),
                batch_size=self.window,
                batch_format="pyarrow",
                num_cpus=self.threads,
                fn_constructor_kwargs=self.embed_kwargs,
                # An actor that dies fails the build, which a rerun resumes: Ray Data would
                # restart it and retry its batch forever (an encoder out of memory, again and
                # again), and says so in an error line on stderr for every build.
                max_restarts=0,
            )
        out.context.execution_options.preserve_order = True  # the driver writes in input order
        # Small blocks: a reader hands on its rows as it goes (not a whole file at the end), and
        # each window's vectors leave its actor when ready, not with the next window's.
        out.context.target_max_block_size = BLOCK_BYTES
        out.context.enable_progress_bars = False  # the caller's bar shows progress
        return out.iter_batches(batch_size=None, batch_format="pyarrow")


class _Writer:
    """The driver's side: rows in input order -> the report, and one upsert per window."""

    def __init__(
        self,
        col: CollectionBackend,
        options: BuildOptions,
        report: BuildReport,
        on_bad_row: Callable[[BadRow], None] | None,
        on_skipped_file: Callable[[SkippedFile], None] | None,
    ) -> None:
        self.col, self.report = col, report
        self.window = options.batch_size * options.window_batches
        self.on_bad_row, self.on_skipped_file = on_bad_row, on_skipped_file
        self.pending: list[Embedded] = []
        self.units = 0  # in `pending`
        self.seen: set[str] = set()  # records read (for sync)
        # Records skipped as stored after this run had written the same id from another file:
        # their last version is embedded again at the end.
        self.stale: dict[str, Record] = {}

    def take(self, block: Any, again: bool = False) -> None:
        """One block of embedded rows; `again`: rows of the second pass over `stale`."""
        self.report.embed_seconds += sum(block.column("embed_s").to_pylist())
        for item in block.column("item").to_pylist():
            if item:
                self._row(pickle.loads(item), again)
        if self.units >= self.window:
            self.flush()

    def _row(self, row: Any, again: bool) -> None:
        report = self.report
        if isinstance(row, Embedded):
            if again:  # counted as stored in the first pass
                report.skipped_existing -= len(row.units)
            else:
                report.documents += 1
                report.chunks += len(row.units)
            if row.parent in self.seen and not row.updated:  # written earlier in this run
                row = dataclasses.replace(row, updated=True)
            self.stale.pop(row.parent, None)
            self.seen.add(row.parent)
            self.pending.append(row)
            self.units += len(row.units)
        elif isinstance(row, Unchanged):
            if again:
                return
            report.documents += 1
            report.chunks += row.units
            report.skipped_existing += row.units
            if row.record.id in self.seen:
                self.stale.pop(row.record.id, None)  # the last version read wins
                self.stale[row.record.id] = row.record
            self.seen.add(row.record.id)
        elif isinstance(row, Failed):
            raise row.error
        elif not note_skip(row, report, self.on_bad_row, self.on_skipped_file):
            raise AssertionError(f"unexpected row from the encoder stage: {type(row).__name__}")

    def flush(self) -> None:
        """Write the pending records in one transaction, each record's earlier units replaced."""
        if not self.pending:
            return
        units = [u for e in self.pending for u in e.units]
        if units:
            vectors = np.concatenate([e.vectors for e in self.pending])  # (n, dim)
            self.col.upsert(units, vectors, [e.parent for e in self.pending])
            self.report.added += len(units)
            self.report.updated += sum(e.updated for e in self.pending)
        self.pending, self.units = [], 0

"""The batch indexer: readers -> optional token chunks -> length-sorted batches -> embed -> upsert.

Resumable by construction: every window of documents is one SQLite transaction, and a record
stored exactly as read (the same units: text, metadata, chunks) is skipped before embedding, so
after `kill -9` a rerun embeds only what is missing and ends with every document exactly once. A
record whose text, metadata or chunking changed is re-embedded whole, its earlier units replaced
in the same transaction. `sync` then deletes every stored document this run did not read.
`--reindex` re-embeds the stored texts into a fresh directory beside the collection and swaps it
in (rerunnable the same way).

A reindex refuses to run while any other process has the collection open (a server, a search, a
build): it takes the collection's `open.lock` exclusively, which every open handle shares for its
lifetime, and errors out (LockTimeout, "stop it first") when that does not come free within the
lock timeout. The alternative, letting a server write on meanwhile, would lose the writes
acknowledged after the copy and leave the server's SQLite handles on the deleted directory; while
the reindex runs, servers and builds that try to open the collection wait, then fail the same
way. The copy is marked complete before the swap, so a crash at any point of the swap is finished
or undone by the next open (index/persistence.py), never losing the old copy's data.
"""

from __future__ import annotations

import bisect
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from semsearch.index import (
    Collection,
    CollectionBackend,
    Doc,
    FormatError,
    IndexConfig,
    Limits,
    NotFound,
)
from semsearch.index.ids import CHUNK_MARK, chunk_id
from semsearch.index.ingest.chunking import chunk_spans, default_overlap, split_document
from semsearch.index.ingest.documents import SkippedFile
from semsearch.index.ingest.readers import BadRow, Progress, ReaderOptions, Record, read_inputs
from semsearch.index.ingest.targets import QdrantTarget
from semsearch.index.locking import exclusive_open, writer_lock
from semsearch.index.persistence import (
    DATABASE,
    SWAP_MARKER,
    atomic_write,
    mark_complete,
    read_manifest,
    recover_swap,
    reindex_dir,
    swap_directories,
)
from semsearch.index.store import Store

log = logging.getLogger(__name__)

REINDEX_SOURCE = "reindex.source"  # in `<dir>.reindex`: the source state and encoder it copies


class Tokenizer(Protocol):
    def encode(self, text: str, *args: Any, **kwargs: Any) -> Any: ...


class Embedder(Protocol):
    """What the indexer needs from `encoder.load_embedder()`."""

    tokenizer: Tokenizer

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray: ...

    def fingerprint(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class BuildOptions:
    reader: ReaderOptions = field(default_factory=ReaderOptions)
    batch_size: int = 32
    # Documents buffered, length-sorted, embedded and committed together. Wider windows pad less:
    # at 8 batches ingest ran at 0.84x the encoder's own throughput on the same texts.
    window_batches: int = 32
    chunk_tokens: int | None = None
    chunk_overlap: int = 0
    index_type: str | None = None
    index_options: dict[str, Any] = field(default_factory=dict)  # IndexConfig fields to set
    reindex: bool = False
    sync: bool = False  # delete stored documents the inputs no longer hold
    # Waiting for other processes: their writer lock, or (for a reindex) for them to close it.
    lock_timeout_s: float = Limits().lock_timeout_s
    # Where to write instead of the local directory (index/ingest/targets.py); None: local.
    store: QdrantTarget | None = None

    def __post_init__(self) -> None:
        if not self.lock_timeout_s > 0:
            raise ValueError(f"lock timeout must be > 0 seconds, got {self.lock_timeout_s}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.chunk_tokens is not None:
            chunk_spans([(0, 1)], self.chunk_tokens, self.chunk_overlap)  # validates both
        elif self.chunk_overlap:
            raise ValueError("--chunk-overlap needs --chunk-tokens")
        if self.store is not None and (self.reindex or self.index_type or self.index_options):
            raise ValueError(
                "--reindex and the index settings (--index-type, --ef-construction, --ef-search, "
                "--nprobe) are the local store's; a Qdrant collection takes none "
                "(SEMSEARCH_STORE=qdrant)"
            )


@dataclass
class BuildReport:
    documents: int = 0  # rows read as documents
    chunks: int = 0  # units stored or skipped (documents, or their chunks)
    added: int = 0  # units embedded and written (new or changed)
    updated: int = 0  # of the records written, those that were stored before, changed
    skipped_existing: int = 0  # units stored exactly as read: not embedded again
    deleted: int = 0  # units `sync` deleted
    sync_refused: str = ""  # why `sync` deleted nothing (some input could not be read)
    bad_rows: int = 0
    skipped_files: int = 0  # files that did not become documents (SkippedFile says why)
    reembedded: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0
    count: int = 0  # documents in the collection afterwards

    @property
    def docs_per_s(self) -> float:
        return self.added / self.seconds if self.seconds else 0.0


class ProgressBar(Protocol):
    def update(self, n: int) -> Any: ...

    def set_postfix(self, *args: Any, **kwargs: Any) -> Any: ...

    def close(self) -> Any: ...


def build_index(
    inputs: Sequence[str | Path],
    index_dir: str | Path,
    embedder: Embedder,
    options: BuildOptions | None = None,
    on_bad_row: Callable[[BadRow], None] | None = None,
    bar: Callable[[int], ProgressBar] | None = None,
    on_skipped_file: Callable[[SkippedFile], None] | None = None,
) -> BuildReport:
    """Index `inputs` into the collection at `index_dir`; see the module docstring.

    `bar(total_bytes)` makes a progress bar (tqdm-like; None for none); `on_bad_row` receives each
    skipped row, `on_skipped_file` each skipped file (each logged instead when it is None).
    """
    options = options or BuildOptions()
    report = BuildReport()
    started = time.perf_counter()
    index_dir = Path(index_dir)
    prepare_directory(index_dir, embedder, options, report)
    progress = Progress()
    rows = read_inputs(inputs, options.reader, progress)
    pbar = bar(progress.total_bytes) if bar is not None else None
    with open_for_build(index_dir, embedder, options) as col:
        done, size = 0, options.batch_size * options.window_batches
        seen: set[str] = set()
        for window in _windows(rows, size, report, on_bad_row, on_skipped_file):
            groups = [(rec.id, list(record_units(rec, embedder, options))) for rec in window]
            seen.update(rec.id for rec in window)
            units = sum(len(g) for _, g in groups)
            report.documents += len(window)
            report.chunks += units
            t0 = time.perf_counter()
            added, updated = _embed_and_upsert(col, embedder, groups, options.batch_size)
            report.embed_seconds += time.perf_counter() - t0
            report.added += added
            report.updated += updated
            report.skipped_existing += units - added
            if pbar is not None:
                advance_bar(pbar, progress.bytes_read - done, report, started)
                done = progress.bytes_read
        if options.sync:
            sync_deletions(col, seen, report)
        report.count = col.count()
    if pbar is not None:
        pbar.close()
    report.seconds = time.perf_counter() - started
    return report


def prepare_directory(
    index_dir: Path, embedder: Embedder, options: BuildOptions, report: BuildReport
) -> None:
    """Before a build: finish or undo a swap a crash interrupted, and run `--reindex`."""
    if options.store is not None:
        return  # not a directory
    recover_swap(index_dir, options.lock_timeout_s)
    if options.reindex and (index_dir / "manifest.json").exists():
        report.reembedded = reindex(index_dir, embedder, options)


def open_for_build(index_dir: Path, embedder: Embedder, options: BuildOptions) -> CollectionBackend:
    """The collection a build writes to, created for this encoder when new."""
    if options.store is not None:
        return options.store.open(embedder)
    return Collection.open(
        index_dir,
        dim=embedder.dim,
        encoder_fingerprint=embedder.fingerprint(),
        index_type=options.index_type,
        index_options=options.index_options,
        limits=Limits(lock_timeout_s=options.lock_timeout_s),
        background=False,  # a batch: rebuilds between windows, the same on every run
    )


def advance_bar(pbar: ProgressBar, nbytes: int, report: BuildReport, started: float) -> None:
    """Move the bar by `nbytes` input bytes consumed; show documents read, added, and the rate."""
    pbar.update(nbytes)
    rate = report.added / max(time.perf_counter() - started, 1e-9)
    pbar.set_postfix(docs=report.documents, added=report.added, docs_s=f"{rate:.1f}")


def note_skip(
    row: Record | BadRow | SkippedFile,
    report: BuildReport,
    on_bad_row: Callable[[BadRow], None] | None,
    on_skipped_file: Callable[[SkippedFile], None] | None,
) -> bool:
    """Count and report a bad row or a skipped file (logged when its callback is None); False
    for a record, which the caller indexes."""
    if isinstance(row, SkippedFile):
        report.skipped_files += 1
        if on_skipped_file is not None:
            on_skipped_file(row)
        else:
            log.warning("skipped %s", row)
        return True
    if isinstance(row, BadRow):
        report.bad_rows += 1
        if on_bad_row is not None:
            on_bad_row(row)
        else:
            log.warning("skipped %s", row)
        return True
    return False


def _windows(
    rows: Iterable[Record | BadRow | SkippedFile],
    size: int,
    report: BuildReport,
    on_bad_row: Callable[[BadRow], None] | None,
    on_skipped_file: Callable[[SkippedFile], None] | None,
) -> Iterator[list[Record]]:
    window: list[Record] = []
    for row in rows:
        if note_skip(row, report, on_bad_row, on_skipped_file):
            continue
        assert isinstance(row, Record)
        window.append(row)
        if len(window) >= size:
            yield window
            window = []
    if window:
        yield window


def _token_offsets(tokenizer: Tokenizer, text: str) -> list[tuple[int, int]]:
    """Character offsets of the text's tokens, without [CLS]/[SEP]."""
    try:
        enc = tokenizer.encode(text, max_length=None, add_special_tokens=False)
        return [tuple(o) for o in enc.offsets]
    except TypeError:  # a tokenizer that always adds specials: drop their empty spans
        enc = tokenizer.encode(text, max_length=None)
        return [tuple(o) for o in enc.offsets if o[1] > o[0]]


def record_units(rec: Record, embedder: Embedder, options: BuildOptions) -> Iterator[Doc]:
    """What a record is stored as: itself, or its token chunks `docid#chunk-n` (fixed windows
    with --chunk-tokens; else, when it is longer than the encoder takes, chunks that cover it)."""
    if options.chunk_tokens is None:
        doc = Doc(rec.id, rec.text, rec.metadata)
        length = getattr(embedder, "max_length", None)  # None: an embedder that takes anything
        if length is None:
            yield doc
            return
        size = length - 2  # beside [CLS] and [SEP]
        for part in split_document(doc, embedder.tokenizer, size, default_overlap(size)):
            if rec.pages and part.id != doc.id:
                start, end = part.metadata["chunk_start"], part.metadata["chunk_end"]
                part.metadata["page"] = bisect.bisect_right(rec.pages, start)
                part.metadata["page_end"] = bisect.bisect_right(rec.pages, end - 1)
            yield part
        return
    offsets = _token_offsets(embedder.tokenizer, rec.text)
    spans = chunk_spans(offsets, options.chunk_tokens, options.chunk_overlap)
    for n, (start, end) in enumerate(spans):
        meta = {**rec.metadata, "parent_id": rec.id, "chunk": n}
        if rec.pages:  # 1-based: the pages the chunk's first and last characters are on
            meta["page"] = bisect.bisect_right(rec.pages, start)
            meta["page_end"] = bisect.bisect_right(rec.pages, end - 1)
        yield Doc(chunk_id(rec.id, n), rec.text[start:end], meta)


def parent_of(doc_id: str) -> str:
    """The record a stored id belongs to: a chunk's parent, else the id itself."""
    head, mark, n = doc_id.rpartition(CHUNK_MARK)
    return head if mark and n.isascii() and n.isdigit() else doc_id


def by_parent(families: dict[str, Doc]) -> dict[str, dict[str, Doc]]:
    """Stored units (`Collection.families`) grouped by the record they belong to."""
    stored: dict[str, dict[str, Doc]] = {}
    for doc_id, doc in families.items():
        stored.setdefault(parent_of(doc_id), {})[doc_id] = doc
    return stored


def stored_as_read(units: list[Doc], before: dict[str, Doc]) -> bool:
    """Whether a record's units (whole, or chunks) are stored exactly as read: nothing to embed."""
    return len(before) == len(units) and all(before.get(u.id) == u for u in units)


def _embed_and_upsert(
    col: CollectionBackend,
    embedder: Embedder,
    groups: list[tuple[str, list[Doc]]],
    batch: int,
) -> tuple[int, int]:
    """Embed the records not stored exactly as read (each record's units: whole, or chunks),
    longest first, and upsert them in one transaction, each record's earlier units replaced.
    Returns (units written, records among them that were stored before)."""
    stored = by_parent(col.families([parent for parent, _ in groups]))
    todo: list[Doc] = []
    parents: list[str] = []
    updated = 0
    for parent, units in groups:
        before = stored.get(parent, {})
        if stored_as_read(units, before):
            continue
        todo += units
        parents.append(parent)
        updated += bool(before)
    if not todo:
        return 0, 0
    todo, vectors = encode_longest_first(embedder, todo, batch)
    col.upsert(todo, vectors, parents)
    return len(todo), updated


def encode_longest_first(
    embedder: Embedder, units: list[Doc], batch: int
) -> tuple[list[Doc], np.ndarray]:
    """The units longest first (similar lengths share a batch: little padding), and their
    vectors in that order."""
    ordered = sorted(units, key=lambda u: -len(u.text))
    return ordered, embedder.encode([u.text for u in ordered], batch_size=batch)


def sync_deletions(col: CollectionBackend, seen: set[str], report: BuildReport) -> None:
    """Delete the stored documents (and chunks) of records this run did not read; nothing when
    some input could not be read, since its documents would look gone."""
    if report.bad_rows or report.skipped_files:
        report.sync_refused = (
            f"{report.skipped_files} files and {report.bad_rows} rows could not be read"
        )
        log.warning("--sync deleted nothing: %s", report.sync_refused)
        return
    gone = [i for ids in col.iter_ids() for i in ids if parent_of(i) not in seen]
    for start in range(0, len(gone), 1_024):
        report.deleted += col.delete(gone[start : start + 1_024])


def reindex(index_dir: Path, embedder: Embedder, options: BuildOptions) -> int:
    """Re-embed every stored text with `embedder` into `<dir>.reindex`, then swap it in.

    Holds the collection exclusively throughout (see the module docstring): LockTimeout when
    another process keeps it open."""
    fresh = reindex_dir(index_dir)
    timeout = options.lock_timeout_s
    count = 0
    recover_swap(index_dir, timeout)
    with exclusive_open(index_dir, timeout), writer_lock(index_dir, timeout):
        manifest = read_manifest(index_dir)
        if manifest is None:
            raise NotFound(f"no collection in {index_dir} to reindex")
        index_type = options.index_type or IndexConfig.from_dict(manifest.index).index_type
        # The store itself, not a Collection: this process holds the open lock exclusively.
        source = Store(index_dir / DATABASE)
        try:
            with source.snapshot():
                seq = source.last_seq()
            _prepare_fresh(fresh, {"source_seq": seq, "fingerprint": embedder.fingerprint()})
            with Collection.open(
                fresh,
                dim=embedder.dim,
                encoder_fingerprint=embedder.fingerprint(),
                index_type=index_type,
                index_options=options.index_options,
                limits=Limits(lock_timeout_s=timeout),
                background=False,
            ) as new:
                for docs in source.iter_docs(chunk=options.batch_size * options.window_batches):
                    groups = [(d.id, [d]) for d in docs]  # each stored unit as it is
                    count += _embed_and_upsert(new, embedder, groups, options.batch_size)[0]
                total, expected = new.count(), source.count()
        finally:
            source.close()
        if total != expected:  # never swap in (and so delete the original for) a short copy
            raise FormatError(f"{fresh} holds {total} documents, {index_dir} {expected}")
        mark_complete(fresh, {"source_seq": seq, "count": total})
        swap_directories(fresh, index_dir, timeout)
    (index_dir / REINDEX_SOURCE).unlink(missing_ok=True)
    log.info("re-embedded %d documents into %s", count, index_dir)
    return count


def _prepare_fresh(fresh: Path, source: dict[str, Any]) -> None:
    """Resume a copy of this same source state with this encoder, else start it over."""
    record = fresh / REINDEX_SOURCE
    wanted = json.loads(json.dumps(source, sort_keys=True))  # compared as stored
    if fresh.exists():
        try:
            previous = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = None
        if previous != wanted:
            # The collection changed since (or another encoder): its copy would miss updates.
            log.info("discarding %s: it copies another state of the collection", fresh)
            shutil.rmtree(fresh)
        else:
            (fresh / SWAP_MARKER).unlink(missing_ok=True)  # complete again only after this run
    fresh.mkdir(parents=True, exist_ok=True)
    atomic_write(record, json.dumps(wanted, sort_keys=True).encode() + b"\n")

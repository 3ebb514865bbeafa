"""Streaming readers for the batch indexer: JSONL, CSV/TSV, and text, HTML and PDF files (one
document each, index/ingest/documents.py), named or found in folders.

Rows are read one at a time (memory stays flat on a 1 GB input). A row that cannot become a
document (bad JSON, no text, an id repeated within its file) is yielded as a `BadRow` with its line
number, never dropped silently; a file that cannot become a document, as a `SkippedFile` saying
why. Ids must be stable across runs so a rerun can skip stored ids: rows without an id get
`<file name>:<line>`, files in a folder their relative path. An id that breaks the id rules
(index/ids.py `check_user_id`: too long, control characters, the reserved chunk suffix) makes its
row a bad row (its file a skipped file) too.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semsearch.index.errors import InvalidDocument
from semsearch.index.ids import check_user_id
from semsearch.index.ingest.documents import (
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_PDF_PAGES,
    DOCUMENT_SUFFIXES,
    Skip,
    SkippedFile,
    extract,
    read_bounded,
)

JSONL_SUFFIXES = (".jsonl", ".ndjson")
CSV_SUFFIXES = (".csv", ".tsv")
SUPPORTED_SUFFIXES = (*JSONL_SUFFIXES, *CSV_SUFFIXES, *DOCUMENT_SUFFIXES)
_INT = re.compile(r"^[+-]?\d{1,18}$")
_FLOAT = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class Record:
    id: str
    text: str
    metadata: dict[str, Any]
    source: str
    line: int
    pages: tuple[int, ...] = ()  # PDF: the character offset where each page begins


@dataclass(frozen=True)
class BadRow:
    source: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.reason}"


@dataclass
class ReaderOptions:
    id_field: str = "id"
    text_field: str = "text"
    metadata_fields: Sequence[str] | None = None  # None: a "metadata" object, else the other fields
    # Bounds on files read whole (text, HTML, PDF); JSONL and CSV are streamed a row at a time.
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    max_pdf_pages: int = DEFAULT_MAX_PDF_PAGES

    def __post_init__(self) -> None:
        if self.max_file_bytes < 1 or self.max_pdf_pages < 1:
            raise ValueError(
                f"max_file_bytes and max_pdf_pages must be >= 1, got {self.max_file_bytes} "
                f"and {self.max_pdf_pages}"
            )


@dataclass
class Progress:
    """Bytes consumed so far over all inputs, for the progress bar's ETA."""

    bytes_read: int = 0
    total_bytes: int = 0


def input_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files to read, in order: each path itself, or every file of a supported type in a folder
    (recursively, sorted): documents, and JSONL/CSV read as rows, as if named."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.suffix.lower() in SUPPORTED_SUFFIXES and not p.is_dir()
                )
            )
        elif path.is_file():
            out.append(path)
        else:
            raise FileNotFoundError(f"input {path} does not exist")
    return out


def read_inputs(
    paths: Iterable[str | Path], options: ReaderOptions, progress: Progress | None = None
) -> Iterator[Record | BadRow | SkippedFile]:
    """Records (and bad rows, and skipped files) from every input, in input order.

    Inputs are listed (and `progress.total_bytes` set) now, before the first row is read."""
    progress = progress if progress is not None else Progress()
    roots = [Path(p) for p in paths]
    files = input_files(roots)
    for path in files:
        if path.suffix.lower() not in SUPPORTED_SUFFIXES:
            raise ValueError(
                f"{path}: unsupported input type {path.suffix!r}; use .jsonl/.ndjson, .csv/.tsv, "
                ".txt/.md, .html/.htm, .pdf, or a folder of them"
            )
    progress.total_bytes = sum(_size(f) for f in files)
    return read_files(files, roots, options, progress)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # a broken link in a folder: reported as unreadable when its turn comes
        return 0


def read_files(
    files: list[Path], roots: list[Path], options: ReaderOptions, progress: Progress
) -> Iterator[Record | BadRow | SkippedFile]:
    named = {r for r in roots if not r.is_dir()}
    for path in files:
        suffix = path.suffix.lower()
        if suffix in JSONL_SUFFIXES:
            yield from _read_jsonl(path, options, progress)
        elif suffix in CSV_SUFFIXES:
            yield from _read_csv(path, options, progress)
        else:
            yield _read_document(path, roots, options, progress, strict=path in named)


def _lines(path: Path, progress: Progress) -> Iterator[str]:
    """Decoded lines of a file, counting bytes as they are consumed."""
    with open(path, "rb") as f:
        for raw in f:
            progress.bytes_read += len(raw)
            yield raw.decode("utf-8", errors="replace")


class _Dedup:
    """Ids seen in one file, as 8-byte digests (a few bytes per row, not the ids themselves)."""

    def __init__(self) -> None:
        self._seen: dict[int, int] = {}

    def first_line(self, doc_id: str, line: int) -> int | None:
        key = int.from_bytes(hashlib.blake2b(doc_id.encode(), digest_size=8).digest(), "little")
        first = self._seen.setdefault(key, line)
        return None if first == line else first


def _make_record(
    row: dict[str, Any], options: ReaderOptions, source: Path, line: int, dedup: _Dedup
) -> Record | BadRow:
    text = row.get(options.text_field)
    if not isinstance(text, str) or not text.strip():
        what = "missing" if text is None else "empty" if isinstance(text, str) else "not a string"
        return BadRow(str(source), line, f"text field {options.text_field!r} is {what}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a JSON "\ud800" escape: not text
        return BadRow(str(source), line, "text is not valid Unicode (lone surrogate)")
    raw_id = row.get(options.id_field)
    if raw_id is None or raw_id == "":
        doc_id = f"{source.name}:{line}"
    elif isinstance(raw_id, str | int) and not isinstance(raw_id, bool):
        doc_id = str(raw_id)
    else:
        return BadRow(str(source), line, f"id field {options.id_field!r} is {raw_id!r}")
    try:
        check_user_id(doc_id)
    except InvalidDocument as exc:
        return BadRow(str(source), line, str(exc))
    first = dedup.first_line(doc_id, line)
    if first is not None:
        return BadRow(str(source), line, f"duplicate id {doc_id!r} (first seen on line {first})")
    if options.metadata_fields is not None:
        metadata = {k: row[k] for k in options.metadata_fields if k in row}
    elif isinstance(row.get("metadata"), dict):
        metadata = row["metadata"]
    else:
        skip = {options.id_field, options.text_field, "metadata"}
        metadata = {k: v for k, v in row.items() if k not in skip}
    return Record(doc_id, text, metadata, str(source), line)


def _read_jsonl(
    path: Path, options: ReaderOptions, progress: Progress
) -> Iterator[Record | BadRow]:
    dedup = _Dedup()
    for line_no, line in enumerate(_lines(path, progress), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            yield BadRow(str(path), line_no, f"invalid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(row, dict):
            yield BadRow(str(path), line_no, f"expected a JSON object, got {type(row).__name__}")
            continue
        yield _make_record(row, options, path, line_no, dedup)


def _csv_value(value: str) -> Any:
    """CSV cells are text; numbers become numbers so range filters work on them."""
    if _INT.match(value):
        return int(value)
    if _FLOAT.match(value):
        return float(value)
    return value


def _read_csv(path: Path, options: ReaderOptions, progress: Progress) -> Iterator[Record | BadRow]:
    csv.field_size_limit(1 << 30)  # one long document per cell is normal here
    dedup = _Dedup()
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.reader(_lines(path, progress), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    line_no = reader.line_num
    for cells in reader:
        start, line_no = line_no + 1, reader.line_num  # a quoted cell may span lines
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            yield BadRow(str(path), start, f"{len(cells)} cells, the header has {len(header)}")
            continue
        row: dict[str, Any] = dict(zip(header, cells, strict=True))
        for key, value in row.items():
            if key not in (options.id_field, options.text_field):
                row[key] = _csv_value(value)
        yield _make_record(row, options, path, start, dedup)


def _read_document(
    path: Path, roots: list[Path], options: ReaderOptions, progress: Progress, strict: bool
) -> Record | SkippedFile:
    """One file as one document. An unreadable file named as an input raises (the job fails);
    in a folder, it is skipped like any other file that cannot become a document."""
    root = next((r for r in roots if r.is_dir() and path.is_relative_to(r)), path.parent)
    rel = path.relative_to(root).as_posix()
    try:
        try:
            check_user_id(rel)
            data = read_bounded(path, options.max_file_bytes, strict)
        except InvalidDocument as exc:
            raise Skip("bad id", str(exc)) from exc
        finally:
            progress.bytes_read += _size(path)
        doc = extract(path, data, options.max_file_bytes, options.max_pdf_pages)
        if not doc.text.strip():
            raise Skip("empty")
    except Skip as skip:
        return SkippedFile(str(path), skip.kind, skip.detail, skip.fix)
    return Record(rel, doc.text, {"path": rel, **doc.metadata}, str(path), 1, doc.page_starts)

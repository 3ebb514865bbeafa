"""Whole files as documents: plain text, HTML (its main text) and PDF (its text layer).

One file is one document: its id is its path relative to the folder given (or its name), and
`path` is in its metadata. HTML goes through trafilatura (boilerplate such as navigation and
footers left out, as its `extract` does, comments too; the page's title, as trafilatura finds it,
in the metadata as `title`), PDF through pypdf, page by page: the pages'
texts joined by a blank line (`PAGE_SEPARATOR`; never a form feed, which BERT's normalizer
deletes, gluing the last word of a page to the next one's first), `pages` in the metadata and each
page's start offset on the record, so chunks can say on which page they start and end. Both
parsers are the optional `ingest` extra; without it such files are skipped with the pip command.

A file that cannot become a document is a `SkippedFile` naming what was wrong and, where there is
one, the fix: too large, unreadable, binary, empty, parser missing, an encrypted PDF (one that
opens without a password, as viewers try, is read), a PDF without a text layer, too many pages,
no main text in the HTML, an id that breaks the id rules.

Bounds, since inputs may come from anywhere: a file over `max_file_bytes` is never read (nor read
past that if it grows meanwhile); a PDF of more than `max_pdf_pages` pages is skipped before any
page is extracted (pypdf caps every stream it inflates); the parsers get bytes, never a path or a
URL, so nothing is fetched (trafilatura's `extract` parses what it is given; it decompresses a
compressed page only up to `max_file_bytes`).
"""

from __future__ import annotations

import functools
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt", ".md")
HTML_SUFFIXES = (".html", ".htm")
PDF_SUFFIXES = (".pdf",)
DOCUMENT_SUFFIXES = (*TEXT_SUFFIXES, *HTML_SUFFIXES, *PDF_SUFFIXES)
INGEST_HINT = "pip install 'semsearch[ingest]'"
PAGE_SEPARATOR = "\n\n"
DEFAULT_MAX_FILE_BYTES = 50_000_000
DEFAULT_MAX_PDF_PAGES = 2_000
_BINARY_SNIFF = 8_000  # bytes searched for a NUL, as git decides a file is binary
_BOMS = (
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),  # before utf-16-le: it starts the same way
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)


@dataclass(frozen=True)
class SkippedFile:
    """A file that did not become a document: `kind` is the short reason ("encrypted PDF"),
    `detail` the specifics, `fix` what to do about it (None when nothing can be done)."""

    source: str
    kind: str
    detail: str = ""
    fix: str | None = None

    def __str__(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        fix = f"; {self.fix}" if self.fix else ""
        return f"{self.source}: {self.kind}{detail}{fix}"


@dataclass(frozen=True)
class Extracted:
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    page_starts: tuple[int, ...] = ()  # PDF: the character offset where each page begins


class Skip(Exception):
    """Raised by the extractors: this file is skipped, for this reason."""

    def __init__(self, kind: str, detail: str = "", fix: str | None = None) -> None:
        super().__init__(kind, detail, fix)
        self.kind, self.detail, self.fix = kind, detail, fix


def read_bounded(path: Path, max_bytes: int, strict: bool) -> bytes:
    """The file's bytes, at most `max_bytes` (Skip "too large" past that). An OSError is raised
    when `strict` (an input named on the command line: the job fails), else a Skip."""
    limit = f"{max_bytes:,} bytes, the limit (--max-file-mb)"
    fix = "raise --max-file-mb or split the file"
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise Skip("too large", f"{size:,} bytes > {limit}", fix)
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        if strict:
            raise
        raise Skip("unreadable", exc.strerror or str(exc)) from exc
    if len(data) > max_bytes:  # it grew since stat
        raise Skip("too large", f"more than {limit}", fix)
    return data


def extract(path: Path, data: bytes, max_bytes: int, max_pages: int) -> Extracted:
    """The document in `data` (the bytes of `path`, whose suffix says the format)."""
    suffix = path.suffix.lower()
    if suffix in PDF_SUFFIXES:
        doc = _pdf(data, max_pages)
    elif suffix in HTML_SUFFIXES:
        doc = _html(data, max_bytes)
    else:
        return Extracted(_text(data))
    # A parser's lone surrogate: the tokenizer would refuse the text. Replaced, the length kept.
    text = doc.text.encode("utf-8", errors="replace").decode("utf-8")
    metadata = {
        k: v.encode("utf-8", errors="replace").decode("utf-8") if isinstance(v, str) else v
        for k, v in doc.metadata.items()
    }
    return Extracted(text, metadata, doc.page_starts)


def _text(data: bytes) -> str:
    """UTF-8 (invalid bytes replaced, as before), or UTF-16/32 with a byte order mark."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, errors="replace")
    if b"\0" in data[:_BINARY_SNIFF]:
        raise Skip("binary", f"a NUL byte in its first {_BINARY_SNIFF:,} bytes")
    return data.decode("utf-8", errors="replace")


def _html(data: bytes, max_bytes: int) -> Extracted:
    try:
        import trafilatura
    except ImportError as exc:
        raise Skip("parser missing", f"HTML needs trafilatura: {exc}", INGEST_HINT) from exc
    if not any(data.startswith(bom) for bom, _ in _BOMS) and b"\0" in data[:_BINARY_SNIFF]:
        raise Skip("binary", f"a NUL byte in its first {_BINARY_SNIFF:,} bytes")
    try:  # as for pypdf below: one malformed file is skipped with the parser's message
        found = trafilatura.bare_extraction(
            data,
            include_comments=False,
            include_tables=True,
            with_metadata=True,
            config=_trafilatura_config(max_bytes),
        )
    except Exception as exc:
        log.debug("trafilatura failed", exc_info=True)
        raise Skip("unreadable", f"trafilatura failed: {type(exc).__name__}: {exc}") from exc
    text = found.text if found is not None else None
    if not text or not text.strip():
        raise Skip("no main text", "trafilatura found no main text in it")
    title = (found.title or "").strip()
    return Extracted(text, {"title": title} if title else {})


@functools.cache
def _trafilatura_config(max_bytes: int) -> Any:
    from trafilatura.settings import use_config

    config = use_config()  # the package's own settings file; nothing is read from elsewhere
    config.set("DEFAULT", "MAX_FILE_SIZE", str(max_bytes))  # bounds decompressing a .html.gz
    return config


def _pdf(data: bytes, max_pages: int) -> Extracted:
    try:
        from pypdf import PdfReader
        from pypdf.errors import DependencyError, FileNotDecryptedError
    except ImportError as exc:
        raise Skip("parser missing", f"PDF needs pypdf: {exc}", INGEST_HINT) from exc
    encrypted, decrypt = "encrypted PDF", "decrypt it first, e.g. with qpdf --decrypt"
    # pypdf raises many kinds of exception on a malformed file (its own, ValueError, KeyError,
    # RecursionError...): whichever it is, this one file is skipped with pypdf's message, and a
    # run over thousands of files goes on.
    try:
        reader = PdfReader(io.BytesIO(data))  # tries the empty password, as viewers do
        n = len(reader.pages)  # FileNotDecryptedError when that was not it
        if n > max_pages:
            raise Skip(
                "too many pages",
                f"{n:,} > {max_pages:,}, the limit (--max-pdf-pages)",
                "raise --max-pdf-pages or split the file",
            )
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
    except Skip:
        raise
    except FileNotDecryptedError as exc:
        raise Skip(encrypted, "it needs a password", decrypt) from exc
    except DependencyError as exc:  # AES without a crypto library
        raise Skip(encrypted, str(exc), "pip install cryptography") from exc
    except Exception as exc:  # see above; the cause is kept in the reason
        log.debug("pypdf failed", exc_info=True)
        raise Skip("unreadable", f"not a readable PDF: {type(exc).__name__}: {exc}") from exc
    if not any(pages):
        raise Skip(
            "no text layer",
            f"{n} page{'s' * (n != 1)}, none with text: a scan?",
            "OCR it first, e.g. with ocrmypdf",
        )
    starts, offset = [], 0
    for text in pages:
        starts.append(offset)
        offset += len(text) + len(PAGE_SEPARATOR)
    return Extracted(PAGE_SEPARATOR.join(pages), {"pages": n}, tuple(starts))

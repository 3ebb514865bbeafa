"""HTML and PDF files in `index build`: their texts as the parsers extract them, page numbers on
chunks, and every reason a file is skipped, through the real pipeline and the CLI.

PDFs are written by hand (tests/index_inputs.py `pdf_bytes`), so the text on each page is known
independently of pypdf; pypdf's own extraction of the same file is the second reference. HTML is
compared with trafilatura's `extract` and with the article text the page was written around.
A word-hashing embedder (tests/fakes.py) stands in for the encoder.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from fakes import WordHashEmbedder
from index_inputs import pdf_bytes, write_jsonl

from semsearch.cli import index as cli_index
from semsearch.cli.main import build_parser
from semsearch.cli.main import main as cli_main
from semsearch.index import Collection
from semsearch.index.ingest.documents import INGEST_HINT, PAGE_SEPARATOR, SkippedFile
from semsearch.index.ingest.pipeline import BuildOptions, build_index
from semsearch.index.ingest.readers import ReaderOptions, Record, read_inputs

pypdf = pytest.importorskip("pypdf")
trafilatura = pytest.importorskip("trafilatura")

ARTICLE = [
    "Vector search finds documents by meaning rather than by keywords, comparing embeddings.",
    "FAISS is a library for similarity search over dense vectors, with flat and graph indexes.",
]
BOILERPLATE = ["Home", "About us", "Copyright 2024 Example Corp. All rights reserved."]
HTML = (
    "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Vector search</title></head><body>"
    f"<nav><a href='/'>{BOILERPLATE[0]}</a> | <a href='/about'>{BOILERPLATE[1]}</a></nav>"
    "<main><article><h1>What vector search is</h1>"
    + "".join(f"<p>{p}</p>" for p in ARTICLE)
    + f"</article></main><footer><p>{BOILERPLATE[2]}</p></footer></body></html>"
).encode()
PAGES = ["Page one: retrieval\nfinds the passages", "", "Page three: generation\nwrites the answer"]


def pypdf_text(data: bytes) -> str:
    """pypdf's extraction of each page, joined as the reader documents it."""
    reader = pypdf.PdfReader(io.BytesIO(data))
    return PAGE_SEPARATOR.join(page.extract_text().strip() for page in reader.pages)


def encrypted(data: bytes, user_password: str) -> bytes:
    writer = pypdf.PdfWriter(clone_from=io.BytesIO(data))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def skipped(rows: list) -> dict[str, SkippedFile]:
    return {Path(r.source).name: r for r in rows if isinstance(r, SkippedFile)}


def test_html_and_pdf_are_stored_as_their_parsers_extract_them(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "page.html").write_bytes(HTML)
    (folder / "sub" / "paper.pdf").write_bytes(pdf_bytes(PAGES))
    (folder / "open.pdf").write_bytes(encrypted(pdf_bytes(["No password needed"]), ""))
    (folder / "note.txt").write_text("a plain note")
    write_jsonl(folder / "rows.jsonl", [{"id": "r1", "text": "a row in a folder"}])
    report = build_index([folder], tmp_path / "idx", WordHashEmbedder())
    assert (report.added, report.skipped_files, report.bad_rows) == (5, 0, 0)
    with Collection.open(tmp_path / "idx", read_only=True) as col:
        html = col.get("page.html")
        assert html.text == trafilatura.extract(HTML, include_comments=False)
        assert all(p in html.text for p in ARTICLE)
        assert not any(b in html.text for b in BOILERPLATE)  # main text only
        title = trafilatura.extract_metadata(HTML).title
        assert title and html.metadata == {"path": "page.html", "title": title}
        pdf = col.get("sub/paper.pdf")
        assert pdf.text == PAGE_SEPARATOR.join(PAGES) == pypdf_text(pdf_bytes(PAGES))
        assert pdf.metadata == {"path": "sub/paper.pdf", "pages": 3}
        assert col.get("open.pdf").text == "No password needed"  # AES, empty user password
        assert col.get("note.txt").text == "a plain note"
        assert col.get("r1").text == "a row in a folder"  # record files in folders are read too


def test_pdf_chunks_name_the_pages_they_start_and_end_on(tmp_path: Path) -> None:
    pages = [" ".join(f"p{n}w{i}" for i in range(7)) for n in (1, 2, 3)]
    (tmp_path / "book.pdf").write_bytes(pdf_bytes(pages))
    opts = BuildOptions(chunk_tokens=5, chunk_overlap=1)
    report = build_index([tmp_path / "book.pdf"], tmp_path / "idx", WordHashEmbedder(), opts)
    assert report.added == 5  # 21 words: windows of 5 starting every 4, the last ends at 21
    with Collection.open(tmp_path / "idx", read_only=True) as col:
        for n in range(report.added):
            chunk = col.get(f"book.pdf#chunk-{n}")
            words = chunk.text.split()
            # The reference: the page each word was written on (its `p<n>` prefix).
            expected = (int(words[0][1]), int(words[-1][1]))
            assert (chunk.metadata["page"], chunk.metadata["page_end"]) == expected, chunk
            assert chunk.metadata["pages"] == 3 and chunk.metadata["parent_id"] == "book.pdf"


def test_every_skip_reason(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "locked.pdf").write_bytes(encrypted(pdf_bytes(["secret text"]), "secret"))
    (folder / "scan.pdf").write_bytes(pdf_bytes(["", ""]))
    (folder / "long.pdf").write_bytes(pdf_bytes(["one", "two", "three"]))
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4\nthis is no PDF")
    (folder / "big.txt").write_text("x" * 5_000)
    (folder / "blob.txt").write_bytes(b"ELF\x00\x01\x02 binary")
    (folder / "empty.md").write_text(" \n")
    (folder / "app.html").write_bytes(b"<html><head><title>App</title></head><script>go()</script>")
    os.symlink(tmp_path / "nowhere.txt", folder / "gone.txt")
    (folder / "ok.txt").write_text("fine")
    options = ReaderOptions(max_file_bytes=4_000, max_pdf_pages=2)
    rows = list(read_inputs([folder], options))
    assert [r.id for r in rows if isinstance(r, Record)] == ["ok.txt"]
    kinds = {name: skip.kind for name, skip in skipped(rows).items()}
    assert kinds == {
        "locked.pdf": "encrypted PDF",
        "scan.pdf": "no text layer",
        "long.pdf": "too many pages",
        "broken.pdf": "unreadable",
        "big.txt": "too large",
        "blob.txt": "binary",
        "empty.md": "empty",
        "app.html": "no main text",
        "gone.txt": "unreadable",
    }
    reasons = {name: str(skip) for name, skip in skipped(rows).items()}
    assert "5,000 bytes > 4,000 bytes" in reasons["big.txt"]
    assert "--max-file-mb" in reasons["big.txt"]
    assert "3 > 2" in reasons["long.pdf"] and "--max-pdf-pages" in reasons["long.pdf"]
    assert "2 pages, none with text" in reasons["scan.pdf"] and "OCR" in reasons["scan.pdf"]
    assert "needs a password" in reasons["locked.pdf"]
    assert "No such file" in reasons["gone.txt"]
    # Named on the command line, an unreadable input fails the job instead (exit 1).
    with pytest.raises(FileNotFoundError):
        list(read_inputs([folder / "gone.txt"], options))


def test_without_the_ingest_extra_html_and_pdf_are_skipped_with_the_pip_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "trafilatura", None)  # `import trafilatura` fails
    monkeypatch.setitem(sys.modules, "pypdf", None)
    (tmp_path / "a.html").write_bytes(HTML)
    (tmp_path / "b.pdf").write_bytes(pdf_bytes(PAGES))
    (tmp_path / "c.txt").write_text("still read")
    rows = list(read_inputs([tmp_path], ReaderOptions()))
    assert [r.id for r in rows if isinstance(r, Record)] == ["c.txt"]
    for name, skip in skipped(rows).items():
        assert skip.kind == "parser missing" and skip.fix == INGEST_HINT, name
    assert "trafilatura" in skipped(rows)["a.html"].detail
    assert "pypdf" in skipped(rows)["b.pdf"].detail


def test_cli_lists_skipped_files_at_the_end_or_counts_them_with_quiet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli_index, "load_embedder", lambda args: WordHashEmbedder())
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)  # main() sets it; undone after the test
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("scan1.pdf", "scan2.pdf"):
        (folder / name).write_bytes(pdf_bytes([""]))
    (folder / "big.txt").write_text("word " * 300_000)  # 1.5 MB
    (folder / "ok.html").write_bytes(HTML)
    idx = str(tmp_path / "idx")
    argv = ["index", "build", str(folder), "--index-dir", idx, "--max-file-mb", "1"]
    assert cli_main([*argv, "--quiet"]) == 0  # skipped files do not fail the run
    out, err = capsys.readouterr()
    assert "1 added" in out and "3 files skipped" in out
    assert "skipped 3 files: 2 no text layer (OCR it first, e.g. with ocrmypdf), 1 too large" in err
    assert "scan1.pdf" not in err
    assert cli_main(argv) == 0
    out, err = capsys.readouterr()
    assert "0 added (0 changed), 1 already stored" in out
    listed = err[err.index("skipped 3 files:") :].splitlines()[1:]
    assert [line.split(": ")[0].strip() for line in listed] == [
        str(folder / "big.txt"),
        str(folder / "scan1.pdf"),
        str(folder / "scan2.pdf"),
    ]
    assert "too large (1,500,000 bytes > 1,000,000 bytes" in listed[0]


def test_cli_defaults_are_the_readers_defaults() -> None:
    args = build_parser().parse_args(["index", "build", "x"])
    defaults = ReaderOptions()
    assert args.max_file_mb * 1_000_000 == defaults.max_file_bytes
    assert args.max_pdf_pages == defaults.max_pdf_pages


def test_a_parsers_lone_surrogate_is_replaced_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = SimpleNamespace(text="caf\ud800 menu", title="t\udfff")
    monkeypatch.setattr(trafilatura, "bare_extraction", lambda data, **kwargs: found)
    (tmp_path / "a.html").write_bytes(HTML)
    report = build_index([tmp_path / "a.html"], tmp_path / "idx", WordHashEmbedder())
    assert report.added == 1
    with Collection.open(tmp_path / "idx", read_only=True) as col:
        assert col.get("a.html").text == "caf? menu"  # what the tokenizer can take
        assert col.get("a.html").metadata["title"] == "t?"

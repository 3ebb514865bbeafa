"""Build the real texts of `evaluation/data/` (read by `corpus.py`); run once by hand, never at
run time:

    pip download --no-deps --only-binary=:all: Django==5.2.19 -d SCRATCH
    python -m semsearch.evaluation.build_corpus SCRATCH/django-5.2.19-py3-none-any.whl

Writes three gzipped JSON-lines files (one JSON string per line), each from one licence:

- python-reference.jsonl.gz: paragraphs of the Python Language Reference as `pydoc` ships it
  (`pydoc_data.topics`): technical prose, grammar and code. PSF License 2.
- python-docstrings.jsonl.gz: standard-library docstrings, whole and by paragraph; modules that
  name another copyright holder, and the test suites, are left out. PSF License 2.
- django-translations.jsonl.gz: Django's interface messages in its 99 locales (its `.po`
  catalogs), a few consecutive messages of one catalog per text, so some texts are one word and
  most are a short phrase: accents, CJK, Hangul, Thai, Arabic, Devanagari and more. BSD-3-Clause.

The output depends only on the Python version (3.11.7 built the committed files) and the wheel:
every list is sorted or in file order, the grouping is seeded per catalog, and gzip gets no
timestamp, so a rerun reproduces the files byte for byte.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import random
import re
import sys
import sysconfig
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
BUILT_WITH_PYTHON = (3, 11, 7)
MAX_CHARS = 6000  # past ~1,500 tokens a text exercises nothing new
MAX_GROUP = 6  # messages joined into one translation text
SKIPPED_DIRS = {"test", "tests", "idle_test", "site-packages"}
# A copyright line that names someone other than the PSF: that module keeps its own notice.
_COPYRIGHT = re.compile(r"copyright\b.*(\d{4}|cnri)", re.IGNORECASE)
_PSF = re.compile(r"Python Software Foundation|\bPSF\b")
_PO_LINE = re.compile(r'^(msgctxt|msgid|msgid_plural|msgstr(?:\[\d+\])?)\s+(".*")$')


def paragraphs(text: str) -> Iterator[str]:
    for block in re.split(r"\n\s*\n", text):
        block = block.strip()
        if block:
            yield block


def python_reference() -> Iterator[str]:
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield from paragraphs(topics[name])


def _own_copyright(source: str) -> bool:
    """True when the module carries a copyright notice of someone other than the PSF."""
    return any(_COPYRIGHT.search(line) and not _PSF.search(line) for line in source.splitlines())


def python_docstrings() -> Iterator[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        if SKIPPED_DIRS & set(path.relative_to(root).parts):
            continue
        source = path.read_text(encoding="utf-8", errors="replace")
        if _own_copyright(source):
            continue
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc:
                    yield doc
                    yield from paragraphs(doc)


def _po_messages(text: str, use_msgid: bool) -> Iterator[str]:
    """The translated messages of one `.po` catalog in file order (the msgid when `use_msgid`:
    the English catalog leaves msgstr empty). Obsolete and fuzzy entries are skipped."""
    for entry in text.split("\n\n"):
        if "#, fuzzy" in entry:
            continue
        fields: dict[str, str] = {}
        key = None
        for line in entry.splitlines():
            match = _PO_LINE.match(line)
            if match:
                key = match.group(1)
                fields[key] = ast.literal_eval(match.group(2))
            elif line.startswith('"') and key is not None:
                fields[key] += ast.literal_eval(line)
            elif not line.startswith("#"):
                key = None
        if not fields.get("msgid"):
            continue  # the header entry, or an obsolete (#~) one
        message = fields["msgid"] if use_msgid else fields.get("msgstr", fields.get("msgstr[0]"))
        if message:
            yield message


def django_translations(wheel: Path) -> Iterator[str]:
    with zipfile.ZipFile(wheel) as archive:
        catalogs = sorted(n for n in archive.namelist() if n.endswith(".po") and "/locale/" in n)
        for name in catalogs:
            locale = name.split("/locale/")[1].split("/")[0]
            text = archive.read(name).decode("utf-8")
            messages = list(_po_messages(text, use_msgid=locale == "en"))
            rng = random.Random(name)
            start = 0
            while start < len(messages):
                size = rng.randint(1, MAX_GROUP)
                yield " ".join(messages[start : start + size])
                start += size


def write_texts(path: Path, texts: Iterable[str], seen: set[str]) -> int:
    """Write the texts not in `seen` (and add them to it); returns how many were written."""
    count = 0
    with open(path, "wb") as raw, gzip.GzipFile("", "wb", 9, raw, mtime=0) as out:
        for text in texts:
            text = text[:MAX_CHARS]
            if text in seen:
                continue
            seen.add(text)
            out.write(json.dumps(text, ensure_ascii=False).encode("utf-8") + b"\n")
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("django_wheel", type=Path, help="the Django 5.2.19 wheel (pip download)")
    parser.add_argument("--out", type=Path, default=DATA)
    args = parser.parse_args()
    if sys.version_info[:3] != BUILT_WITH_PYTHON:
        print(f"warning: the committed files were built with Python {BUILT_WITH_PYTHON}")
    seen: set[str] = set()
    sources = {
        "python-reference": python_reference(),
        "python-docstrings": python_docstrings(),
        "django-translations": django_translations(args.django_wheel),
    }
    for name, texts in sources.items():
        path = args.out / f"{name}.jsonl.gz"
        count = write_texts(path, texts, seen)
        print(f"{path.name}: {count} texts, {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()

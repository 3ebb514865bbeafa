"""Real text from this machine: the probe set for conformance tests, `semsearch verify`, bench/.

Sources (all on a stock Debian/Python image): man pages in many languages, package docs under
/usr/share/doc, Python standard-library docstrings, and glibc locale data (month and day names in
dozens of scripts, decoded from their `<Uxxxx>` notation). Everything is deterministic for a seed:
file lists are sorted before sampling, so two runs on the same machine see the same texts.
"""

from __future__ import annotations

import ast
import gzip
import random
import re
import sysconfig
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path

_TROFF_FONT = re.compile(r"\\f(\[[^\]]*\]|\(..|.)")
_TROFF_ESCAPE = re.compile(r"\\(\(..|\[[^\]]*\]|[&|^~0-9])")
_LOCALE_CODEPOINT = re.compile(r"<U([0-9A-Fa-f]{4,6})>")
_LOCALE_STRING = re.compile(r'"([^"]*)"')
_MAX_CHARS = 6000  # a few texts are whole manuals; past ~1,500 tokens nothing new is exercised


def _read_maybe_gz(path: Path, limit: int = 200_000) -> str:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read(limit)
        else:
            with open(path, "rb") as f:
                raw = f.read(limit)
    except (OSError, EOFError):
        return ""
    return raw.decode("utf-8", errors="replace")


def _paragraphs(text: str) -> Iterator[str]:
    for block in re.split(r"\n\s*\n", text):
        block = block.strip()
        if block:
            yield block


def _man_text(raw: str) -> str:
    """Roughly de-troff a man page: keep macro arguments, drop escapes; enough for real prose."""
    lines = []
    for line in raw.splitlines():
        if line.startswith(('.\\"', "'\\\"")):
            continue  # comment
        if line.startswith((".", "'")):
            macro, _, rest = line.partition(" ")
            if macro in (".PP", ".P", ".LP", ".SH", ".SS", ".TP", ".IP", ".sp", ".br"):
                lines.append("")
            line = rest.replace('"', "")
        line = _TROFF_FONT.sub("", line)
        line = line.replace("\\-", "-").replace("\\e", "\\")
        line = _TROFF_ESCAPE.sub("", line)
        lines.append(line)
    return "\n".join(lines)


def _sample_files(pattern_root: Path, glob: str, count: int, rng: random.Random) -> list[Path]:
    if not pattern_root.is_dir():
        return []
    files = sorted(p for p in pattern_root.glob(glob) if p.is_file())
    rng.shuffle(files)
    return files[:count]


def man_page_texts(rng: random.Random, files: int = 300) -> Iterator[str]:
    for path in _sample_files(Path("/usr/share/man"), "**/*.gz", files, rng):
        text = _man_text(_read_maybe_gz(path))
        yield from _paragraphs(text)


def doc_texts(rng: random.Random, files: int = 200) -> Iterator[str]:
    root = Path("/usr/share/doc")
    picked = _sample_files(root, "*/copyright", files // 2, rng)
    picked += _sample_files(root, "*/changelog*.gz", files // 2, rng)
    for path in picked:
        yield from _paragraphs(_read_maybe_gz(path))


def docstring_texts(rng: random.Random, files: int = 300) -> Iterator[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in _sample_files(root, "**/*.py", files, rng):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        except (SyntaxError, ValueError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node, clean=False)
                if doc:
                    yield doc
                    yield from _paragraphs(doc)


def locale_texts(rng: random.Random, files: int = 400) -> Iterator[str]:
    """Month/day names, number formats, and comments of glibc locales: many scripts in one place."""
    for path in _sample_files(Path("/usr/share/i18n/locales"), "*", files, rng):
        raw = _read_maybe_gz(path)
        decoded = _LOCALE_CODEPOINT.sub(lambda m: chr(int(m.group(1), 16)), raw)
        strings = [s for s in _LOCALE_STRING.findall(decoded) if s.strip()]
        # Join names in groups so a text reads like a short phrase in that script.
        for i in range(0, len(strings), 7):
            yield " ".join(strings[i : i + 7])
        for line in decoded.splitlines():
            if line.startswith("%") and len(line) > 3:
                yield line.lstrip("% ")


@lru_cache(maxsize=8)
def real_texts(n: int, seed: int = 0) -> tuple[str, ...]:
    """`n` distinct real strings from this machine, mixed sources, deterministic for `seed`."""
    rng = random.Random(seed)
    sources = [
        list(man_page_texts(rng)),
        list(doc_texts(rng)),
        list(docstring_texts(rng)),
        list(locale_texts(rng)),
    ]
    for source in sources:
        rng.shuffle(source)
    seen: set[str] = set()
    out: list[str] = []
    # Round-robin over the sources so every kind of text is represented even for small n.
    iters = [iter(s) for s in sources]
    while len(out) < n and iters:
        for it in list(iters):
            text = next(it, None)
            if text is None:
                iters.remove(it)
                continue
            text = text[:_MAX_CHARS]
            if text not in seen:
                seen.add(text)
                out.append(text)
                if len(out) == n:
                    break
    if len(out) < n:
        raise RuntimeError(f"only {len(out)} real texts found on this machine; {n} were asked for")
    return tuple(out)


def long_texts(n: int, min_chars: int = 1500, seed: int = 1) -> list[str]:
    """Texts long enough to pass 256 (and often 512) tokens: consecutive real paragraphs joined."""
    return join_paragraphs(real_texts(max(40 * n, 5000), seed=seed), n, min_chars)


def join_paragraphs(paragraphs: Iterable[str], n: int, min_chars: int = 1500) -> list[str]:
    """`n` texts of consecutive `paragraphs` joined by blank lines, each >= `min_chars` long."""
    out, current = [], ""
    for text in paragraphs:
        current = f"{current}\n\n{text}" if current else text
        if len(current) >= min_chars:
            out.append(current)
            current = ""
            if len(out) == n:
                return out
    raise RuntimeError(f"only {len(out)} long texts found on this machine; {n} were asked for")

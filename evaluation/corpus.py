"""Real text that ships with the project: the probe and calibration set of the conformance tests,
`semsearch export`, `semsearch verify` and bench/.

The texts are package data (`evaluation/data/`, built once by `build_corpus.py`; the data README
names the sources and their licences): Python's language reference and standard-library
docstrings (English prose, grammar and code) and Django's interface messages in 99 locales (short
phrases in many scripts). The same texts on every machine, and the same draw for a seed.
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources

# One file per source; `real_texts` draws from them in turn so every kind is in every sample.
SOURCES = ("python-reference", "python-docstrings", "django-translations")


@lru_cache(maxsize=len(SOURCES))
def source_texts(name: str) -> tuple[str, ...]:
    """The texts of one source, in file order (distinct across all sources)."""
    data = resources.files("semsearch.evaluation") / "data" / f"{name}.jsonl.gz"
    with data.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
        return tuple(json.loads(line) for line in lines)


@lru_cache(maxsize=8)
def real_texts(n: int, seed: int = 0) -> tuple[str, ...]:
    """`n` distinct real texts, paragraph-sized, mixed sources, deterministic for `seed`."""
    rng = random.Random(seed)
    sources = [list(source_texts(name)) for name in SOURCES]
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
            if text not in seen:
                seen.add(text)
                out.append(text)
                if len(out) == n:
                    break
    if len(out) < n:
        raise ValueError(f"the shipped corpus holds {len(out)} distinct texts; {n} were asked for")
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
    raise ValueError(f"only {len(out)} texts of {min_chars}+ characters; {n} were asked for")

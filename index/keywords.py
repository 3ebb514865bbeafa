"""Keyword terms for BM25: what the full-text index stores for a text, and what a query asks.

The terms are computed here, in Python, and handed to SQLite FTS5 as a space-separated string that
its `ascii` tokenizer (`FTS_TOKENIZE`) splits back into exactly these terms: the tokenizer is ours,
FTS5 only keeps the postings and computes BM25. A term is

- a word: a run of letters and digits (Unicode), NFKC-normalized and case-folded;
- a compound: words joined by `-`, `_`, `.`, `:`, `/` or `@`, possibly led by dashes or
  underscores (`ip-netconf`, `o_direct`, `--dry-run`, `__init__.py`, `std::vector`, `10.0.0.1`).

A stored text is indexed with every compound whole, without its leading and trailing dashes and
underscores (`dry-run` for `--dry-run`), and as its words (`dry`, `run`), so `netconf` alone finds
`ip-netconf`; a word written in camel case is indexed as its parts too (`getUserName`: `get`,
`user`, `name`; `HTTPServer`: `http`, `server`), as written, before case folding. A query keeps
each compound whole: `ip-netconf` asks for that compound (and ranks its documents by that rare
term), `--dry-run` for the option with its dashes, `dry-run` for either spelling. A text's other
characters (punctuation, symbols, spaces) separate terms and are never searchable; scripts written
without spaces (Chinese, Japanese) index a run of characters as one term, as FTS5's own
`unicode61` does.

The user's query never reaches FTS5's query syntax: it is reduced to these terms (which hold no
quote, no `*`, `^`, `:`, parentheses or spaces) and each one is sent as a quoted string, so
`NEAR`, `AND`, `OR`, `NOT` and column names are plain words.
"""

from __future__ import annotations

import functools
import re
import unicodedata

# Changing anything that decides the terms of a text changes this: a collection whose keyword
# index was built with another version (or another Unicode database, whose letters and case
# folding decide the terms too) rebuilds it from the stored texts when opened for writing.
TOKENIZER_VERSION = 2  # 2: camel-case parts
# FTS5 splits the stored and the quoted query strings at spaces and keeps the joiners: every
# other character of a term is a letter or digit, which the `ascii` tokenizer keeps as well.
FTS_TOKENIZE = "ascii tokenchars '-_.:/@'"

_EDGES = "-_"
# Combining marks live in these planes only (Unicode's roadmap: none in the ideograph planes).
_MARK_PLANES = (range(0x20000), range(0xE0000, 0xE1000))


@functools.cache
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """(compound, word) regexes. A word's characters are letters and digits (`str.isalnum`) and
    combining marks, which `\\w` leaves out (Devanagari's vowel signs: `नमस्ते` is one word)."""
    ranges: list[tuple[int, int]] = []
    for plane in _MARK_PLANES:
        for cp in plane:
            if not unicodedata.category(chr(cp)).startswith("M"):
                continue
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1] = (ranges[-1][0], cp)
            else:
                ranges.append((cp, cp))
    marks = "".join(f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)
    word = rf"(?:[^\W_]|[{marks}])+"
    return re.compile(rf"[-_]*{word}(?:[-_.:/@]+{word})*_*"), re.compile(word)


def version_code() -> int:
    """`TOKENIZER_VERSION` and the Unicode database's version as one integer (stored in meta)."""
    major, minor, micro = (int(p) for p in unicodedata.unidata_version.split("."))
    return TOKENIZER_VERSION * 1_000_000 + major * 10_000 + minor * 100 + micro


def _compounds(text: str) -> list[str]:
    return _patterns()[0].findall(unicodedata.normalize("NFKC", text).casefold())


def camel_parts(word: str) -> list[str]:
    """`word` cut where its case says a new part starts: before an upper-case letter that
    follows a lower-case letter or a digit (`getUser`, `x86Linux`), and before the last capital
    of a run that a lower-case letter follows (`HTTPServer`: `HTTP`, `Server`)."""
    cuts = [0]
    for i in range(1, len(word)):
        before, here = word[i - 1], word[i]
        if here.isupper() and (
            before.islower()
            or before.isdigit()
            or (before.isupper() and i + 1 < len(word) and word[i + 1].islower())
        ):
            cuts.append(i)
    return [word[a:b] for a, b in zip(cuts, [*cuts[1:], len(word)], strict=True)]


def index_terms(text: str) -> list[str]:
    """The terms stored for `text`, in order: each compound, its bare form, its words, and the
    parts of its camel-case words."""
    terms: list[str] = []
    for written in _patterns()[0].findall(unicodedata.normalize("NFKC", text)):
        compound = written.casefold()
        terms.append(compound)
        words = _patterns()[1].findall(compound)
        camel = [
            part.casefold()
            for word in _patterns()[1].findall(written)
            if len(parts := camel_parts(word)) > 1
            for part in parts
        ]
        if len(words) == 1 and words[0] == compound and not camel:
            continue  # a plain word
        bare = compound.strip(_EDGES)
        if bare != compound:
            terms.append(bare)
        if len(words) > 1:
            terms.extend(dict.fromkeys(words))
        terms.extend(dict.fromkeys(p for p in camel if p not in words))
    return terms


def query_terms(text: str) -> list[str]:
    """The distinct terms a query asks for, in the order they first appear."""
    return list(dict.fromkeys(_compounds(text)))


def stored_string(text: str) -> str:
    """What the FTS5 column holds for `text`: its terms, space-separated."""
    return " ".join(index_terms(text))


def match_expression(terms: list[str]) -> str:
    """An FTS5 MATCH expression for documents holding any of `terms` (BM25 ranks them).

    Every term is a quoted string (a `"` inside would be doubled; `query_terms` makes none)."""
    if not terms:
        raise ValueError("a keyword query needs at least one term")
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)

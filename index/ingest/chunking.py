"""Split a long document into windows of tokens, cut at their character offsets (the chunks' ids
are `index.ids.chunk_id`): fixed windows (`chunk_spans`, `index build --chunk-tokens`), or chunks
that cover the whole text and end between words (`covering_spans`, `split_document`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from semsearch.index.documents import Doc
from semsearch.index.ids import chunk_id


def chunk_spans(
    offsets: Sequence[tuple[int, int]], size: int, overlap: int = 0
) -> list[tuple[int, int]]:
    """Character spans `(start, end)` of windows of `size` tokens, each `size - overlap` apart.

    `offsets` are the tokens' `(start, end)` character offsets (no special tokens). A text that
    fits in one window gives one span; the last window ends at the last token.
    """
    if size < 1:
        raise ValueError(f"chunk size must be >= 1 token, got {size}")
    if not 0 <= overlap < size:
        raise ValueError(f"chunk overlap must be in [0, {size}), got {overlap}")
    if not offsets:
        return []
    step = size - overlap
    spans = []
    for first in range(0, len(offsets), step):
        last = min(first + size, len(offsets)) - 1
        spans.append((offsets[first][0], offsets[last][1]))
        if last == len(offsets) - 1:
            break
    return spans


# Where a cut is best, in order: after a blank line, a line break, a sentence's end.
_SENTENCE_END = frozenset(".!?;。！？")


def covering_spans(
    text: str,
    offsets: Sequence[tuple[int, int]],
    continues: Sequence[bool],
    size: int,
    overlap: int = 0,
) -> list[tuple[int, int]]:
    """Character spans of chunks of at most `size` tokens that cover all of `text`, consecutive
    ones sharing about `overlap` tokens.

    `offsets` are the tokens' character offsets (no special tokens), `continues[i]` says token i
    continues the word before it (a `##` piece). Chunks end between words, at a paragraph, a line
    or a sentence end in their last half when there is one: a chunk's text then encodes to exactly
    its tokens. The first span starts at 0, the last ends at `len(text)`, and each ends where the
    next starts or later, so the spans' union is the text and the text can be put back together
    from its chunks and their offsets (text no token covers, such as spaces, joins a neighbour).
    """
    if size < 1:
        raise ValueError(f"chunk size must be >= 1 token, got {size}")
    if not 0 <= overlap < size:
        raise ValueError(f"chunk overlap must be in [0, {size}), got {overlap}")
    n = len(offsets)
    if n <= size:
        return [(0, len(text))]
    windows: list[tuple[int, int]] = []  # (first token, last token)
    first = 0
    while True:
        last = min(first + size, n) - 1
        if last == n - 1:
            windows.append((first, last))
            break
        last = _best_cut(text, offsets, continues, first, last)
        windows.append((first, last))
        following = last + 1 - overlap
        while following > first + 1 and continues[following]:  # start on a word
            following -= 1
        first = max(following, first + 1)
    starts = [0] + [offsets[f][0] for f, _ in windows[1:]]
    spans = []
    for i, (_, last) in enumerate(windows):
        end = len(text) if i == len(windows) - 1 else max(offsets[last][1], starts[i + 1])
        spans.append((starts[i], end))
    return spans


def _best_cut(
    text: str,
    offsets: Sequence[tuple[int, int]],
    continues: Sequence[bool],
    first: int,
    last: int,
) -> int:
    """The last token of a chunk that may end at `last`: the latest paragraph, line or sentence
    end in the window's second half, else the latest word end; `last` when no word ends inside."""
    best: dict[int, int] = {}  # rank -> token
    for i in range(last, first + (last - first) // 2, -1):
        if continues[i + 1]:
            continue  # inside a word
        gap = text[offsets[i][1] : offsets[i + 1][0]]
        if "\n\n" in gap:
            rank = 0
        elif "\n" in gap:
            rank = 1
        elif text[offsets[i][0] : offsets[i][1]][-1:] in _SENTENCE_END:
            rank = 2
        else:
            rank = 3
        best.setdefault(rank, i)
    for rank in (0, 1, 2, 3):
        if rank in best:
            return best[rank]
    for i in range(last, first, -1):  # no word ends in the second half: any word end
        if not continues[i + 1]:
            return i
    return last


DEFAULT_OVERLAP = 32  # tokens two chunks of one document share, unless asked otherwise


def default_overlap(size: int) -> int:
    """What consecutive chunks of `size` tokens share by default: 32 tokens, a quarter at most."""
    return min(DEFAULT_OVERLAP, size // 4)


def word_continuations(text: str, offsets: Sequence[tuple[int, int]]) -> list[bool]:
    """For each token, whether it continues the word of the token before it (a WordPiece `##`
    piece): it starts where that one ended, both letters or digits there."""
    out = [False] * len(offsets)
    for i in range(1, len(offsets)):
        start, prev_end = offsets[i][0], offsets[i - 1][1]
        out[i] = (
            start == prev_end
            and text[start : start + 1].isalnum()
            and text[prev_end - 1 : prev_end].isalnum()
        )
    return out


def split_document(doc: Doc, tokenizer: Any, size: int, overlap: int) -> list[Doc]:
    """`doc` whole when its text fits in `size` tokens, else chunks `<id>#chunk-<n>` that cover
    all of it (`covering_spans`), with its metadata plus `parent_id`, `chunk`, `chunk_start` and
    `chunk_end` (character offsets in its text)."""
    if len(doc.text) <= size:  # a token covers at least one character
        return [doc]
    offsets = [tuple(o) for o in tokenizer.encode(doc.text, add_special_tokens=False).offsets]
    if len(offsets) <= size:
        return [doc]
    spans = covering_spans(doc.text, offsets, word_continuations(doc.text, offsets), size, overlap)
    return [
        Doc(
            chunk_id(doc.id, n),
            doc.text[start:end],
            {
                **doc.metadata,
                "parent_id": doc.id,
                "chunk": n,
                "chunk_start": start,
                "chunk_end": end,
            },
        )
        for n, (start, end) in enumerate(spans)
    ]

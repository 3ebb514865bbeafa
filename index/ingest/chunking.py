"""Split a long document into overlapping windows of tokens, cut at their character offsets
(the chunks' ids are `index.ids.chunk_id`)."""

from __future__ import annotations

from collections.abc import Sequence


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

"""The prompt of a retrieval-augmented answer: numbered sources, then the question."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from semsearch.index import Hit
from semsearch.service.errors import PayloadTooLarge

SYSTEM_PROMPT = (
    "You answer questions using only the numbered sources below. Cite the sources you use as "
    "[1], [2]. If the sources do not contain the answer, say that you don't know."
)


def clip(text: str, max_chars: int) -> str:
    """Cut at a word boundary so a long document does not crowd out the others (or the context)."""
    if len(text) <= max_chars:
        return text
    cut = text.rfind(" ", 0, max_chars)
    return text[: cut if cut > max_chars // 2 else max_chars] + " …"


def rag_messages(query: str, hits: Sequence[Hit], max_source_chars: int) -> list[dict[str, str]]:
    """Chat messages for the decoder: the instructions (the system message), the sources, the query.

    Three messages, so the decoder's prefix cache can reuse the instructions for every question
    and the sources for another question that retrieved the same ones (it reuses whole messages).
    The sources are the user's turn, not the system's: retrieved text is not trusted."""
    if hits:
        sources = "\n\n".join(
            f"[{i}] {clip(hit.text, max_source_chars)}" for i, hit in enumerate(hits, start=1)
        )
    else:
        sources = "(no source matched the question)"
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Sources:\n{sources}"},
        {"role": "user", "content": query},
    ]


def fit_prompt(
    query: str,
    hits: Sequence[Hit],
    max_source_chars: int,
    room: int,
    to_ids: Callable[[list[dict[str, str]]], list[int]],
) -> tuple[list[int], int]:
    """The prompt's ids with as many of the best hits as fit in `room` tokens, and how many.

    Sources are clipped by characters, but a character can be several tokens (CJK, emoji), so the
    lowest-ranked sources are dropped until the prompt fits: the answer then cites fewer sources
    instead of failing. 413 when even the question alone does not fit."""
    for n in range(len(hits), -1, -1):
        ids = to_ids(rag_messages(query, hits[:n], max_source_chars))
        if len(ids) <= room:
            return ids, n
    raise PayloadTooLarge(
        f"the question alone takes {len(ids)} tokens, more than the {room} the model's context "
        "leaves beside the answer's max_new_tokens; shorten it"
    )

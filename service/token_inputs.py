"""TEI's `/embed` inputs beyond plain text: token ids a client tokenized itself, and named prompts.

Ids are checked here (each sequence non-empty, inside the vocabulary, within the size limit) and
wrapped as the same `Encoding` the tokenizer makes, so the batcher and every embedder take them
unchanged. A prompt is the model's own text put before each input, named by `prompt_name` as in
sentence-transformers' `encode(..., prompt_name=)` and TEI's `/embed`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from semsearch.encoder.wordpiece import Encoding
from semsearch.service.errors import PayloadTooLarge, ValidationFailed

# One embedding input: a text, or token ids already tokenized (TEI's `inputs` takes both).
Input = str | Sequence[int]

_NAME_CHARS = 64  # of a client's `prompt_name`, repeated in an error


def check_token_ids(
    sequences: Iterable[tuple[int, Sequence[int]]], vocab_size: int, limit: int, what: str
) -> int:
    """Each `(index, ids)`: not empty (422), at most `limit` ids (413, SEMSEARCH_MAX_INPUT_CHARS:
    an id counts as a character, as TEI counts it), every id in `[0, vocab_size)` (422). The
    total number of ids."""
    total = 0
    for i, ids in sequences:
        if not ids:
            raise ValidationFailed(f"{what} {i} is an empty list of token ids")
        if len(ids) > limit:
            raise PayloadTooLarge(
                f"{what} {i} has {len(ids)} token ids, more than the limit of {limit} "
                "(SEMSEARCH_MAX_INPUT_CHARS, an id counting as a character); shorten or split it"
            )
        if min(ids) < 0 or max(ids) >= vocab_size:
            position, bad = next((p, t) for p, t in enumerate(ids) if not 0 <= t < vocab_size)
            raise ValidationFailed(
                f"{what} {i}: token id {bad} at position {position} is outside the model's "
                f"vocabulary (ids 0 to {vocab_size - 1})"
            )
        total += len(ids)
    return total


def ids_encoding(ids: Sequence[int], max_length: int | None, truncation_side: str) -> Encoding:
    """Token ids as the model's input, exactly as given: nothing is added (a client that wants
    [CLS] and [SEP] sends them, as `/tokenize` returns them). With `max_length`, the first
    (`"right"`) or the last (`"left"`) `max_length` ids, as TEI cuts them."""
    kept = list(ids)
    if max_length is not None and len(kept) > max_length:
        kept = kept[:max_length] if truncation_side == "right" else kept[-max_length:]
    n = len(kept)
    return Encoding(kept, [0] * n, [1] * n, [(0, 0)] * n, [0] * n)


def prompt_text(prompts: Mapping[str, str], name: str | None) -> str:
    """The text `prompt_name` names ("" without one); a 422 naming the model's prompts (or saying
    it has none) for any other name."""
    if name is None:
        return ""
    if name in prompts:
        return prompts[name]
    shown = repr(name[:_NAME_CHARS])
    if not prompts:
        raise ValidationFailed(
            f"prompt_name {shown}: the served model defines no prompts "
            "(no `prompts` in its config_sentence_transformers.json); leave prompt_name out",
            param="prompt_name",
        )
    raise ValidationFailed(
        f"prompt_name {shown} is not one of the served model's prompts: "
        f"{', '.join(map(repr, sorted(prompts)))}",
        param="prompt_name",
    )

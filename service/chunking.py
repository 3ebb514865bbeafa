"""`/documents` never cuts a text short: a document longer than the encoder takes (or than the
request's `chunking.tokens`) is stored as chunks `<id>#chunk-<n>` that cover all of it, each with
the parent's metadata plus `parent_id`, `chunk` and its character offsets `chunk_start` and
`chunk_end` in the parent's text (so a hit says where in the document it is). `GET /documents/{id}`
puts the whole text back together from them (`whole_document`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from semsearch.index import Doc
from semsearch.index.ingest.chunking import default_overlap, split_document
from semsearch.service.errors import ValidationFailed

if TYPE_CHECKING:
    from semsearch.encoder.wordpiece import WordPieceTokenizer

CHUNK_KEYS = ("parent_id", "chunk", "chunk_start", "chunk_end")


@dataclass(frozen=True)
class Chunking:
    tokens: int | None = None  # None: as many as the encoder takes
    overlap: int | None = None  # None: `default_overlap(tokens)`


@dataclass(frozen=True)
class Plan:
    units: list[Doc]  # what is embedded and stored: whole documents and chunks
    chunked: int  # documents stored as chunks


def check_chunking(chunking: Chunking, model_tokens: int) -> tuple[int, int]:
    """`(tokens, overlap)` of a chunk: the request's (or collection's) or the defaults; 422 for
    values the encoder cannot take. `model_tokens`: the encoder's length less [CLS] and [SEP]."""
    size = model_tokens if chunking.tokens is None else chunking.tokens
    if not 1 <= size <= model_tokens:
        raise ValidationFailed(
            f"chunking.tokens={size}: chunks hold 1 to {model_tokens} tokens, what the encoder "
            "takes beside [CLS] and [SEP]",
            param="chunking",
        )
    overlap = default_overlap(size) if chunking.overlap is None else chunking.overlap
    if not 0 <= overlap < size:
        raise ValidationFailed(
            f"chunking.overlap={overlap}: must be below chunking.tokens ({size})", param="chunking"
        )
    return size, overlap


def plan_units(
    docs: list[Doc], tokenizer: WordPieceTokenizer, model_tokens: int, chunking: Chunking
) -> Plan:
    """The stored units of `docs`: each whole when its text fits in a chunk, else its chunks.
    CPU-bound (it tokenizes every text): run it off the event loop."""
    size, overlap = check_chunking(chunking, model_tokens)
    units: list[Doc] = []
    chunked = 0
    for doc in docs:
        parts = split_document(doc, tokenizer, size, overlap)
        chunked += parts[0].id != doc.id
        units += parts
    return Plan(units, chunked)


def whole_document(parent: str, chunks: list[Doc]) -> Doc:
    """The document `parent` put back together from its chunks (in order): each chunk's text
    past the part the one before it covered, and the metadata it was stored with."""
    text = chunks[0].text
    for before, chunk in zip(chunks, chunks[1:], strict=False):
        shared = before.metadata["chunk_end"] - chunk.metadata["chunk_start"]
        text += chunk.text[shared:]
    metadata = {k: v for k, v in chunks[0].metadata.items() if k not in CHUNK_KEYS}
    return Doc(parent, text, metadata)

"""The embedding engine: the encoder behind the routes, fed by the dynamic batcher, in three steps.

Pre (tokenize, check lengths) runs on arrival in the request's handler; core (one padded batch
through the model) runs on the batcher's thread, packing concurrent requests together; post
(this request's rows, optional normalization) comes after.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from semsearch.service.access import note
from semsearch.service.batcher import Batcher, BatchStats
from semsearch.service.errors import PayloadTooLarge, ValidationFailed, input_errors
from semsearch.service.offload import run_sized
from semsearch.service.protocols import Embedder
from semsearch.service.settings import Settings
from semsearch.service.token_inputs import Input, check_token_ids, ids_encoding

if TYPE_CHECKING:
    from semsearch.encoder.wordpiece import Encoding

log = logging.getLogger(__name__)

# What `/info` and `/v1/embeddings` name the encoder (a client's `model` is echoed instead).
MODEL_ID = "semsearch-encoder"


def check_input_count(count: int, limit: int, what: str = "inputs") -> None:
    """Empty is a 422, over the limit a 413 (TEI's statuses)."""
    if count == 0:
        raise ValidationFailed(f"`{what}` must contain at least one item")
    if count > limit:
        raise PayloadTooLarge(
            f"{count} {what} > the maximum of {limit} per request; split the request"
        )


def check_text_lengths(texts: Sequence[str], limit: int, setting: str, what: str = "input") -> int:
    """413 for a text longer than `limit` characters; the total number of characters otherwise."""
    total = 0
    for i, text in enumerate(texts):
        if len(text) > limit:
            raise PayloadTooLarge(
                f"{what} {i} has {len(text)} characters, more than the limit of {limit} "
                f"({setting}); shorten or split it"
            )
        total += len(text)
    return total


@dataclass(frozen=True)
class Embedded:
    vectors: np.ndarray  # (n, dim) float32, input order
    token_counts: list[int]  # tokens each input fed the model, [CLS] and [SEP] included
    truncated: list[bool]  # whether each input had more tokens than the model takes, and was cut


def _without(enc: Encoding, position: int) -> Encoding:
    """`enc` less the token at `position`."""
    parts = (enc.ids, enc.type_ids, enc.attention_mask, enc.offsets, enc.special_tokens_mask)
    return type(enc)(*(part[:position] + part[position:][1:] for part in parts))


class EmbeddingEngine:
    """Owns one embedder and the batcher that feeds it."""

    def __init__(
        self,
        embedder: Embedder,
        settings: Settings,
        on_batch: Callable[[BatchStats], None] | None = None,
    ) -> None:
        self.embedder = embedder
        self.settings = settings
        self.batcher: Batcher[Encoding] = Batcher(
            self._run_core,
            max_batch_tokens=settings.max_batch_tokens,
            max_batch_requests=settings.max_batch_requests,
            max_wait_ms=settings.max_wait_ms,
            max_queue_requests=settings.max_queue_requests,
            on_batch=on_batch,
        )

    @property
    def model_id(self) -> str:
        return MODEL_ID

    @property
    def max_length(self) -> int:
        return self.embedder.max_length

    def tokenize(
        self,
        inputs: Sequence[Input],
        truncate: bool,
        truncation_side: str = "right",
        prompt: str = "",
    ) -> tuple[list[Encoding], list[bool]]:
        """Pre: texts (after `prompt`) to WordPiece encodings and token ids as given, truncated
        to the model's length at `truncation_side`, or 413 when too long; and which were cut.

        A text is encoded to one token more than the model takes: if that one is there, the text
        was longer, and dropping it (the last piece kept on the cut side) leaves what encoding to
        the model's length gives, since pieces come out in order."""
        tokenizer = self.embedder.tokenizer
        max_length = self.max_length if truncate else None
        probe = self.max_length + 1 if truncate else None
        encodings, truncated = [], []
        with input_errors():
            for item in inputs:
                if isinstance(item, str) or prompt:
                    # Ids after a prompt are read back as text and encoded with it, as TEI does.
                    text = item if isinstance(item, str) else tokenizer.decode(item)
                    enc = tokenizer.encode(
                        prompt + text, max_length=probe, truncation_side=truncation_side
                    )
                    cut = len(enc) > self.max_length
                    if cut:  # [CLS] piece ... piece [SEP]: the piece next to the cut goes
                        enc = _without(enc, -2 if truncation_side == "right" else 1)
                else:
                    cut = truncate and len(item) > self.max_length
                    enc = ids_encoding(item, max_length, truncation_side)
                encodings.append(enc)
                truncated.append(cut)
        if truncate:
            return encodings, truncated
        for i, enc in enumerate(encodings):
            if len(enc) > self.max_length:
                raise PayloadTooLarge(
                    f"input {i} has {len(enc)} tokens, more than the model's maximum of "
                    f"{self.max_length}; shorten it or send `truncate: true`"
                )
        return encodings, truncated

    def _run_core(self, encodings: Sequence[Encoding]) -> np.ndarray:
        """Core, on the batcher's thread: one padded call, rows back in the given order.

        Unnormalized, so requests that asked `normalize: false` can share the batch.
        """
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i]))
        arrays = self.embedder.tokenizer.pad([encodings[i] for i in order])
        sorted_rows = self.embedder.encode_batch_arrays(
            arrays["input_ids"],
            arrays["attention_mask"],
            arrays["token_type_ids"],
            normalize=False,
        )
        rows = np.empty_like(sorted_rows)
        rows[order] = sorted_rows
        return rows

    def check_inputs(self, inputs: Sequence[Input], what: str = "input") -> int:
        """Each text within SEMSEARCH_MAX_INPUT_CHARS (413 otherwise), each list of token ids
        as `check_token_ids` says; their total length (characters and ids)."""
        limit, setting = self.settings.max_input_chars, "SEMSEARCH_MAX_INPUT_CHARS"
        ids = [(i, item) for i, item in enumerate(inputs) if not isinstance(item, str)]
        if not ids:
            return check_text_lengths(inputs, limit, setting, what)
        texts = [item if isinstance(item, str) else "" for item in inputs]  # indices kept
        vocab_size = len(self.embedder.tokenizer.id_to_token)
        return check_text_lengths(texts, limit, setting, what) + check_token_ids(
            ids, vocab_size, limit, what
        )

    async def embed(
        self,
        texts: Sequence[Input],
        *,
        normalize: bool,
        truncate: bool,
        chars: int | None = None,
        truncation_side: str = "right",
        prompt: str = "",
    ) -> Embedded:
        """Tokenize (off the loop when long), queue for the model, normalize. `texts` may hold
        token ids too. `chars`: the inputs' total length when the caller already checked it (else
        they are checked here)."""
        if chars is None:
            chars = self.check_inputs(texts)
        encodings, truncated = await run_sized(
            chars, self.tokenize, texts, truncate, truncation_side, prompt
        )
        vectors = await self.batcher.submit(encodings)
        token_counts = [len(e) for e in encodings]
        note(batch_size=len(texts), tokens=sum(token_counts))  # the request's access line
        if normalize:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.maximum(norms, 1e-12)  # the epsilon of torch's F.normalize
        return Embedded(vectors=vectors, token_counts=token_counts, truncated=truncated)

    async def embed_many(self, texts: Sequence[str]) -> np.ndarray:
        """Normalized, truncated vectors for any number of texts, queued in client-sized pieces."""
        step = self.settings.max_client_batch_size
        # A task group: when one piece fails (a full queue) or the caller leaves, the others are
        # cancelled and leave the queue too.
        try:
            async with asyncio.TaskGroup() as group:
                parts = [
                    group.create_task(
                        self.embed(piece, normalize=True, truncate=True, chars=sum(map(len, piece)))
                    )
                    for piece in (texts[i : i + step] for i in range(0, len(texts), step))
                ]
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None  # the first cause, as one request would raise it
        return np.concatenate([p.result().vectors for p in parts])

    def close(self) -> None:
        self.batcher.stop()

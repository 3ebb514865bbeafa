"""What every encoder backend shares: input checks on padded arrays, and `encode()` over `core`.

Pre / core / post, as in Infinity's `transformer/abstract.py` and TEI's `backends/core`: `encode()`
tokenizes, sorts by length and batches (pre), runs the backend's `encode_batch_arrays()` on each
padded batch (the pure core the service's dynamic batcher calls directly), and writes rows back in
input order (post). Backends implement only `encode_batch_arrays`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from semsearch.encoder.model_files import ModelFiles
from semsearch.encoder.wordpiece import WordPieceTokenizer


def check_threads(threads: Any) -> None:
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise ValueError(f"threads must be a positive int or None, got {threads!r}")


class SentenceEmbedder(ABC):
    backend: str
    files: ModelFiles
    tokenizer: WordPieceTokenizer
    # Set by backend `auto` (`encoder.onnx.auto`): which backend it chose and why.
    backend_choice: dict[str, Any] | None = None

    @property
    def dim(self) -> int:
        return self.files.dim

    @property
    def max_length(self) -> int:
        return self.files.max_seq_length

    @property
    def prompts(self) -> Mapping[str, str]:
        """The model's named prompts (config_sentence_transformers.json): name -> text that
        sentence-transformers' `encode(..., prompt_name=name)` puts before each input."""
        return self.files.prompts

    @abstractmethod
    def fingerprint(self) -> dict[str, Any]:
        """What identifies this encoder's vectors: two fingerprints equal -> same vectors."""

    def encode_batch_arrays(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        token_type_ids: np.ndarray | None = None,
        normalize: bool = True,
    ) -> np.ndarray:
        """The core: padded int64 (B, T) arrays in, (B, dim) float32 sentence vectors out."""
        self.check_arrays(input_ids, attention_mask, token_type_ids)
        if input_ids.shape[0] == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        return self._embed(input_ids, attention_mask, token_type_ids, normalize)

    @abstractmethod
    def _embed(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        token_type_ids: np.ndarray | None,
        normalize: bool,
    ) -> np.ndarray:
        """The backend's forward on checked, non-empty (B, T) arrays: (B, dim) float32."""

    def check_arrays(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: Any
    ) -> None:
        """Shapes, dtypes and id ranges of a padded batch; every row must have a token."""
        arrays = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            arrays["token_type_ids"] = token_type_ids
        shape = np.shape(input_ids)
        for name, a in arrays.items():
            if not isinstance(a, np.ndarray) or a.ndim != 2 or a.dtype.kind not in "iu":
                raise ValueError(f"{name} must be a 2-D integer np.ndarray, got {a!r:.80}")
            if a.shape != shape:
                raise ValueError(f"{name} shape {a.shape} != input_ids shape {shape}")
        config = self.files.config
        if input_ids.size and (input_ids.min() < 0 or input_ids.max() >= config.vocab_size):
            raise ValueError(
                f"input_ids must lie in [0, {config.vocab_size}), got "
                f"[{input_ids.min()}, {input_ids.max()}]"
            )
        if (
            token_type_ids is not None
            and token_type_ids.size
            and (token_type_ids.min() < 0 or token_type_ids.max() >= config.type_vocab_size)
        ):
            raise ValueError(f"token_type_ids must lie in [0, {config.type_vocab_size})")
        if shape[1] > config.max_position_embeddings:
            raise ValueError(
                f"sequence length {shape[1]} exceeds max_position_embeddings "
                f"({config.max_position_embeddings}); truncate the input"
            )
        empty = np.flatnonzero(~attention_mask.astype(bool).any(axis=1))
        if empty.size:
            raise ValueError(f"rows {empty[:10].tolist()} have no tokens in attention_mask")

    def encode(
        self, texts: Sequence[str], batch_size: int = 32, normalize: bool = True
    ) -> np.ndarray:
        """Texts -> (n, dim) float32 vectors in input order, L2-normalized when `normalize`.

        Inputs longer than `max_length` tokens are truncated, as sentence-transformers does.
        """
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of texts; wrap a single text in a list")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        texts = list(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self.tokenizer.encode_batch(texts, max_length=self.max_length)
        # Longest first, so each batch pads little (and a too-large batch fails first, not last).
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i]))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            arrays = self.tokenizer.pad([encodings[i] for i in rows])
            out[rows] = self.encode_batch_arrays(
                arrays["input_ids"],
                arrays["attention_mask"],
                arrays["token_type_ids"],
                normalize=normalize,
            )
        return out

"""Hashing embedders for tests whose subject is not the encoder's model: deterministic vectors,
no weights, texts that share tokens are close and unrelated texts nearly orthogonal; and a
scripted decoder for tests about streams, not about generation.

Two embedder contracts, two fakes:

- `TokenHashEmbedder` is what the service sees in the real encoder (`encoder/base.py`'s
  `SentenceEmbedder`): the real model files (dim 384, max length 256), the real WordPiece tokenizer,
  the inherited `encode()` pre/post, and a core that hashes token ids where BERT would run. Limits,
  token counts, truncation and `/tokenize` behave as with the real model; only the vectors differ.
- `WordHashEmbedder` is what the batch indexer needs (`index/ingest/pipeline.py`'s `Embedder`):
  words as tokens (so chunk boundaries are easy to state in a test), `encode(texts)` and a
  fingerprint, in any dim (two dims and tags stand for two encoders).

`GatedLoader` stands in for the service's encoder loading, held until the test lets it finish.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from semsearch.encoder.base import SentenceEmbedder
from semsearch.encoder.model_files import ModelFiles, read_model_files
from semsearch.encoder.wordpiece import WordPieceTokenizer


class TokenHashEmbedder(SentenceEmbedder):
    """The real tokenizer and model files; feature hashing of token ids in place of BERT.

    A sentence vector sums, over the attended tokens but [CLS] and [SEP], +-1 at one bucket per
    vocabulary id (a seeded table: the hashing trick). `seconds_per_token` makes each core call
    cost time, as the model's does, for tests about work that is queued or abandoned.
    """

    backend = "token-hash"

    def __init__(
        self, files: ModelFiles | None = None, *, seed: int = 0, seconds_per_token: float = 0.0
    ) -> None:
        self.files = files or read_model_files()
        self.tokenizer = WordPieceTokenizer.from_dir(self.files.model_dir)
        self.seed = seed
        self.seconds_per_token = seconds_per_token
        rng = np.random.default_rng(seed)
        vocab_size = self.files.config.vocab_size
        self._bucket = rng.integers(0, self.dim, vocab_size)  # (V,)
        self._sign = rng.choice(np.array([-1.0, 1.0], np.float32), vocab_size)  # (V,)
        # What the tokenizer adds to every text carries no weight: unrelated texts stay apart.
        tok = self.tokenizer
        self._sign[[tok.cls_token_id, tok.sep_token_id, tok.pad_token_id]] = 0.0

    def fingerprint(self) -> dict[str, Any]:
        return {
            "weights_sha256": hashlib.sha256(f"token-hash seed={self.seed}".encode()).hexdigest(),
            "vocab_sha256": self.tokenizer.vocab_sha256,
            "dim": self.dim,
            "max_length": self.max_length,
            "pooling": "token-hash",
            "normalize": True,
            "backend": self.backend,
            "quantization": None,
        }

    def _embed(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        token_type_ids: np.ndarray | None,
        normalize: bool,
    ) -> np.ndarray:
        B, T = input_ids.shape
        out = np.zeros((B, self.dim), dtype=np.float32)  # (B, C)
        out[:, 0] = 1e-3  # never a zero vector
        rows = np.broadcast_to(np.arange(B)[:, None], (B, T))  # (B, T)
        weights = self._sign[input_ids] * attention_mask  # (B, T); padding adds nothing
        np.add.at(out, (rows, self._bucket[input_ids]), weights)
        if self.seconds_per_token:
            time.sleep(self.seconds_per_token * int(attention_mask.sum()))
        if normalize:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out


_WORD = re.compile(r"\w+|[^\w\s]")


class WordTokenizer:
    """Words and punctuation marks as tokens, with their character offsets."""

    def encode(self, text: str, max_length: int | None = None, add_special_tokens: bool = True):
        spans = [m.span() for m in _WORD.finditer(text)][:max_length]
        return SimpleNamespace(ids=list(range(len(spans))), offsets=spans)


class WordHashEmbedder:
    """Bag of hashed words, L2-normalized; records every `encode` call's texts."""

    def __init__(self, dim: int = 64, tag: str = "fake-v1", delay: float = 0.0) -> None:
        self.dim, self.tag, self.delay = dim, tag, delay
        self.tokenizer = WordTokenizer()
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        self.calls.append(list(texts))
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            out[row, 0] = 1e-3  # never a zero vector
            for word in _WORD.findall(text.lower()):
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little")
                out[row, h % self.dim] += 1.0 if h & 1 << 20 else -1.0
        time.sleep(self.delay * len(texts))
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def fingerprint(self) -> dict[str, Any]:
        return {"weights_sha256": self.tag, "dim": self.dim, "backend": "fake"}


@dataclass(frozen=True)
class ScriptedEvent:
    """The decoder's `StreamEvent`: one token's ids and new text; the last says why it ended."""

    text: str
    token_ids: list[int]
    finish_reason: str | None = None
    usage: dict[str, int] | None = None


class CharTokenizer:
    """One token per character: a prompt's length is easy to state."""

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]


class ScriptedGenerator:
    """The decoder's contract (`service/protocols.py`'s `TextGenerator`) answering `words`, one
    per event, whatever the prompt. `prefill_seconds` of silence come first (a long prompt's
    prefill), then `seconds_per_token` before each word; with `fail_after`, the stream raises after
    that many events (a worker that crashes mid-stream), with a message naming a path that must
    not reach the client."""

    context_length = 2048

    def __init__(
        self,
        words: Sequence[str] = ("Hello", " there", "!"),
        *,
        prefill_seconds: float = 0.0,
        seconds_per_token: float = 0.0,
        fail_after: int | None = None,
    ) -> None:
        self.words = tuple(words)
        self.prefill_seconds = prefill_seconds
        self.seconds_per_token = seconds_per_token
        self.fail_after = fail_after
        self.tokenizer = CharTokenizer()

    def chat_ids(
        self, messages: list[dict[str, str]], add_generation_prompt: bool = True
    ) -> list[int]:
        return self.tokenizer.encode("".join(f"{m['role']}: {m['content']}\n" for m in messages))

    def fingerprint(self) -> dict[str, Any]:
        return {"model": "scripted", "words": list(self.words)}

    def stream(
        self,
        prompt_ids: Sequence[int],
        max_new_tokens: int = 32,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int = 0,
        repetition_penalty: float = 1.0,
        stop: str | Sequence[str | int] | None = None,
        seed: int | None = None,
    ) -> Iterator[ScriptedEvent]:
        time.sleep(self.prefill_seconds)
        words = self.words[:max_new_tokens]
        for i, word in enumerate(words):
            time.sleep(self.seconds_per_token)
            if i == self.fail_after:
                raise RuntimeError("worker crashed reading /srv/secret")
            if i < len(words) - 1:
                yield ScriptedEvent(word, [i])
            else:
                usage = {
                    "prompt_tokens": len(prompt_ids),
                    "completion_tokens": len(words),
                    "total_tokens": len(prompt_ids) + len(words),
                }
                reason = "stop" if len(words) == len(self.words) else "length"
                yield ScriptedEvent(word, [i], reason, usage)


class GatedLoader:
    """`load_configured_embedder(settings)` for `semsearch.service.models`: it blocks until
    `release()`, then returns `embedder` or raises `error`, so a test sees the server loading."""

    def __init__(self, embedder: Any, error: Exception | None = None) -> None:
        self.embedder, self.error = embedder, error
        self._gate = threading.Event()

    def release(self) -> None:
        self._gate.set()

    def __call__(self, settings: Any) -> Any:
        if not self._gate.wait(timeout=60):
            raise TimeoutError("the test never released the loader")
        if self.error is not None:
            raise self.error
        return self.embedder

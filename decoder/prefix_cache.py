"""Reuse of the keys and values of prompt beginnings that recent prompts shared.

Chat and RAG prompts begin the same way (the system message, the RAG instructions, the earlier
turns of a conversation): their keys and values are kept in a small LRU, bounded in bytes, and a
prompt that begins with a kept prefix starts its prefill after it.

Exactness. A prefill's numbers depend on how it is split: a matmul over 100 rows does not round
exactly as one over 120 rows (fp32 logits move by ~1e-5, int4's bf16 prefill by up to ~1). So the
prefill is always split at the same places for the same tokens, whether the cache holds them or
not: at message starts (the `<|im_start|>` control token), chosen by `split_points` from the tokens
before each point only. A prefix is reused only at one of those points, where the run that stored
it split too: a cached answer is then bit-for-bit the answer the same prompt gets from a cold cache
(tested). The price is one extra pass over the weights per split on a cold prompt (about as much
as prefilling 20-30 tokens on a 2-core CPU), so points closer than `MIN_CHUNK` tokens are merged.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from semsearch.decoder.kv_cache import KVCache

logger = logging.getLogger(__name__)

# Fewer tokens than this between two splits cost more than they can save.
MIN_CHUNK = 32


def split_points(prompt: Sequence[int], marker_id: int | None) -> list[int]:
    """Where the prefill of `prompt` is split: positions of the message-start marker at least
    MIN_CHUNK tokens after the previous split. Whether a position p is one depends only on
    prompt[: p + 1], so two prompts that share a beginning are split alike within it, which is
    what makes a reused prefix exact. A chat prompt's last split is usually its generation prompt
    (`<|im_start|>assistant\n`): the next turn of the conversation reuses everything before it."""
    if marker_id is None:
        return []
    points: list[int] = []
    last = 0
    for i, token in enumerate(prompt):
        if token == marker_id and i - last >= MIN_CHUNK:
            points.append(i)
            last = i
    return points


@dataclass(frozen=True)
class _Entry:
    ids: tuple[int, ...]  # the prefix's tokens: one prompt up to its last split point
    points: frozenset[int]  # that prompt's split points: where a reuse is exact
    k: torch.Tensor  # (L, B=1, KV, len(ids), D)
    v: torch.Tensor

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes


class PrefixCache:
    """An LRU of prompt prefixes' keys and values, at most `max_bytes` in all. Thread-safe: the
    entries are never written after they are made, so a reader copies outside the lock."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[int, ...], _Entry] = OrderedDict()  # oldest first
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def restore(self, prompt: Sequence[int], points: Sequence[int], cache: KVCache) -> int:
        """Fill `cache` with the longest kept prefix of `prompt` that ends at one of its split
        `points`; returns its length (0: none, the cache is left empty)."""
        best, length = self._find(tuple(prompt), points)
        if best is None:
            return 0
        cache.k[:, :, :, :length].copy_(best.k[:, :, :, :length])
        cache.v[:, :, :, :length].copy_(best.v[:, :, :, :length])
        cache.length = length
        return length

    def _find(self, prompt: tuple[int, ...], points: Sequence[int]) -> tuple[_Entry | None, int]:
        with self._lock:
            best: _Entry | None = None
            length = 0
            for entry in reversed(self._entries.values()):  # the most recent first
                for p in sorted(points, reverse=True):
                    if p <= length:
                        break
                    usable = p == len(entry.ids) or (p < len(entry.ids) and p in entry.points)
                    if usable and entry.ids[:p] == prompt[:p]:
                        best, length = entry, p
                        break
            if best is not None:
                self._entries.move_to_end(best.ids)
            return best, length

    def store(self, prompt: Sequence[int], points: Sequence[int], cache: KVCache) -> None:
        """Keep the keys and values of `prompt` up to its last split point (the tail after it was
        computed in a chunk no other prompt splits alike). `cache` holds at least that much."""
        if not points:
            return
        end = max(points)
        ids = tuple(prompt[:end])
        with self._lock:
            if ids in self._entries:
                self._entries.move_to_end(ids)
                return
        k = cache.k[:, :, :, :end].clone()  # (L, 1, KV, end, D)
        v = cache.v[:, :, :, :end].clone()
        entry = _Entry(ids, frozenset(points), k, v)
        if entry.nbytes > self.max_bytes:
            return
        with self._lock:
            if ids in self._entries:
                return
            # A kept prefix of this one that splits nowhere this one does not serves nothing
            # this one cannot (the same tokens, split alike).
            for old in list(self._entries.values()):
                if old.points <= entry.points and ids[: len(old.ids)] == old.ids:
                    self._drop(old)
            self._entries[ids] = entry
            self._bytes += entry.nbytes
            while self._bytes > self.max_bytes:
                self._drop(next(iter(self._entries.values())))

    def _drop(self, entry: _Entry) -> None:
        del self._entries[entry.ids]
        self._bytes -= entry.nbytes

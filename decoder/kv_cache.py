"""A preallocated key/value cache, one (B, n_kv_heads, max_len, head_dim) buffer pair per layer.

Follows transformers' `StaticCache` (fixed-size buffers written in place at the current
position; no concatenation, so no per-step allocation) and gpt-fast's `KVCache`.
"""

from __future__ import annotations

import torch


class KVCache:
    """Keys and values for positions [0, length) of every layer; `length` advances per step."""

    def __init__(
        self,
        n_layers: int,
        n_kv_heads: int,
        head_dim: int,
        max_len: int,
        batch_size: int = 1,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        shape = (n_layers, batch_size, n_kv_heads, max_len, head_dim)  # (L, B, KV, S, D)
        self.k = torch.zeros(shape, dtype=dtype)
        self.v = torch.zeros(shape, dtype=dtype)
        self.length = 0

    @property
    def max_len(self) -> int:
        return self.k.shape[3]

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    @property
    def dtype(self) -> torch.dtype:
        return self.k.dtype

    def reset(self) -> None:
        """Forget every position; the buffers are kept and overwritten by the next prefill."""
        self.length = 0

    def fits(
        self,
        n_layers: int,
        n_kv_heads: int,
        head_dim: int,
        max_len: int,
        batch_size: int,
        dtype: torch.dtype,
    ) -> bool:
        L, B, KV, S, D = self.k.shape
        return (L, B, KV, D, self.dtype) == (
            n_layers,
            batch_size,
            n_kv_heads,
            head_dim,
            dtype,
        ) and S >= max_len

    def write(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store k, v of shape (B, KV, T, D) at positions start .. start + T - 1."""
        end = start + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions; asked to write to {end}")
        self.k[layer, :, :, start:end].copy_(k)
        self.v[layer, :, :, start:end].copy_(v)

    def view(self, layer: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of positions [0, end): two (B, KV, end, D) views, no copy."""
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

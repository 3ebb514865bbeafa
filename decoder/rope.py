"""Rotary position embeddings (RoPE), in Hugging Face's "rotate half" layout.

Follows transformers' `LlamaRotaryEmbedding` / `apply_rotary_pos_emb` (default rope type, no
scaling): `inv_freq[i] = theta ** (-2i / d)`, `x * cos + rotate_half(x) * sin`, where
`rotate_half(x) = cat(-x[d/2:], x[:d/2])`. The GGUF's Q/K rows are un-permuted at load time
(`decoder.weights.unpermute_qk`) so this layout applies.

For one-token decode steps the same rotation is a (d, d) matrix per position, `rotation(pos)`:
`x @ rotation(pos) == apply(x, cos[pos], sin[pos])`; one matmul per layer instead of five
elementwise ops.
"""

from __future__ import annotations

import torch


def inv_frequencies(head_dim: int, theta: float) -> torch.Tensor:
    """(head_dim/2,) fp32 inverse frequencies, computed as transformers does."""
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim
    return 1.0 / (theta**exponents)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (..., T, D); cos, sin: (T, D) broadcast over the leading dims."""
    return x * cos + rotate_half(x) * sin


class RotaryEmbedding:
    """cos/sin tables for positions [0, max_positions), and per-position rotation matrices."""

    def __init__(
        self, head_dim: int, theta: float, max_positions: int, dtype: torch.dtype = torch.float32
    ) -> None:
        self.head_dim = head_dim
        inv = inv_frequencies(head_dim, theta)  # (D/2,)
        t = torch.arange(max_positions, dtype=torch.float32)
        freqs = torch.outer(t, inv)  # (P, D/2)
        emb = torch.cat((freqs, freqs), dim=-1)  # (P, D)
        self.cos = emb.cos().to(dtype)
        self.sin = emb.sin().to(dtype)
        half = head_dim // 2
        # x @ R == rotate_half(x): R[j + half, j] = -1 and R[j, j + half] = 1 for j < half.
        r = torch.zeros(head_dim, head_dim, dtype=dtype)
        idx = torch.arange(half)
        r[idx + half, idx] = -1.0
        r[idx, idx + half] = 1.0
        self._rot = r

    @property
    def max_positions(self) -> int:
        return self.cos.shape[0]

    def tables(self, start: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin), each (length, D), for positions start .. start + length - 1."""
        if start + length > self.max_positions:
            raise ValueError(
                f"position {start + length - 1} is past the context length {self.max_positions}"
            )
        return self.cos[start : start + length], self.sin[start : start + length]

    def rotation(self, pos: int) -> torch.Tensor:
        """(D, D) matrix M with x @ M == x * cos[pos] + rotate_half(x) * sin[pos]."""
        cos, sin = self.tables(pos, 1)
        return torch.diag(cos[0]) + self._rot * sin  # column j scaled by sin[j]

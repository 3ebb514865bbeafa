"""Sentence pooling and normalization: pure functions, computed as sentence-transformers' `Pooling`
(mean mode) and `Normalize` modules do."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """Mean of `hidden` (B, T, C) over the real tokens of `mask` (B, T) -> (B, C)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    summed = (hidden * m).sum(dim=1)  # (B, C)
    counts = m.sum(dim=1).clamp(min=1e-9)  # (B, 1)
    return summed / counts


def mean_pool_packed(hidden: Tensor, seq_ids: Tensor, lengths: Tensor) -> Tensor:
    """Mean of packed tokens `hidden` (N, C) per sequence: `seq_ids` (N,) row of each token,
    `lengths` (B,) tokens per row -> (B, C)."""
    B, C = lengths.shape[0], hidden.shape[1]
    summed = hidden.new_zeros(B, C).index_add_(0, seq_ids, hidden)  # (B, C)
    counts = lengths.to(hidden.dtype).clamp(min=1e-9).unsqueeze(1)  # (B, 1)
    return summed / counts


def l2_normalize(x: Tensor, eps: float = 1e-12) -> Tensor:
    """Rows of `x` (B, C) scaled to unit L2 norm (a zero row stays zero)."""
    return F.normalize(x, p=2.0, dim=1, eps=eps)


__all__ = ["l2_normalize", "mean_pool", "mean_pool_packed"]

"""Choosing the next token: repetition penalty, temperature, top-k, top-p; greedy at temperature 0.

Follows transformers' logits processors, in the order `generate` applies them:
`RepetitionPenaltyLogitsProcessor`, then `TemperatureLogitsWarper`, `TopKLogitsWarper`,
`TopPLogitsWarper` (keeps the smallest set whose probability reaches `top_p`, at least one token),
then a draw from the softmax with a seeded `torch.Generator` (same seed -> same tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0  # 1 = off
    top_k: int = 0  # 0 = off
    repetition_penalty: float = 1.0  # 1 = off
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not self.repetition_penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def torch_generator(self) -> torch.Generator:
        """A generator seeded with `seed`, or from fresh entropy when `seed` is None."""
        g = torch.Generator()
        if self.seed is None:
            g.seed()
        else:
            g.manual_seed(self.seed)
        return g


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor,
                             penalty: float) -> torch.Tensor:
    """logits (V,), seen (N,) ids: a seen token's logit is divided by `penalty` if positive,
    multiplied by it if negative (CTRL's penalty, as transformers applies it). Returns a copy."""
    if penalty == 1.0 or seen.numel() == 0:
        return logits
    out = logits.clone()
    score = out.gather(0, seen)  # (N,)
    score = torch.where(score < 0, score * penalty, score / penalty)
    out.scatter_(0, seen, score)
    return out


def top_k_mask(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of (V,), others to -inf; k = 0 or k >= V keeps all."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k).values[-1]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_mask(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the most probable tokens whose total probability reaches p (at least one)."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=False)  # (V,) ascending
    cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)  # (V,)
    drop_sorted = cum <= (1 - p)
    drop_sorted[-1] = False  # the most probable token always stays
    drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def next_token(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator,
               seen: torch.Tensor | None = None) -> int:
    """One token id from last-position logits (V,)."""
    logits = logits.float()
    if seen is not None:
        logits = apply_repetition_penalty(logits, seen, params.repetition_penalty)
    if params.greedy:
        return int(torch.argmax(logits))
    logits = logits / params.temperature
    logits = top_k_mask(logits, params.top_k)
    logits = top_p_mask(logits, params.top_p)
    probs = torch.softmax(logits, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))

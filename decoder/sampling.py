"""Choosing the next token: repetition penalty, temperature, top-k, top-p; greedy at temperature 0.

Follows transformers' logits processors, in the order `generate` applies them:
`RepetitionPenaltyLogitsProcessor`, then `TemperatureLogitsWarper`, `TopKLogitsWarper`,
`TopPLogitsWarper` (keeps the smallest set whose probability reaches `top_p`, at least one token),
then a draw from the softmax with a seeded `torch.Generator` (same seed -> same tokens).

Values that would crash the draw are refused up front or made harmless: non-finite numbers and
seeds outside torch's 64-bit range raise ValueError, and a temperature below `SAMPLING_EPS` is
greedy (dividing logits by 1e-40 overflows to inf, and softmax of inf is NaN), as in vLLM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# Temperatures below this are greedy: vLLM's `_SAMPLING_EPS`. At 1e-5 the largest logit already
# outweighs the next by e^(1e5 x gap), so sampling there is greedy in all but name.
SAMPLING_EPS = 1e-5
SEED_LIMIT = 2**64  # torch.Generator.manual_seed takes an unsigned 64-bit seed


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0  # 0 (or below SAMPLING_EPS) = greedy
    top_p: float = 1.0  # 1 = off
    top_k: int = 0  # 0 = off
    repetition_penalty: float = 1.0  # 1 = off
    seed: int | None = None  # None = fresh entropy; else 0 <= seed < 2**64

    def __post_init__(self) -> None:
        # `not (...)`: NaN fails every comparison, so it is refused too; `_finite` refuses inf.
        if not (_finite(self.temperature) and self.temperature >= 0):
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if not (_finite(self.top_p) and 0 < self.top_p <= 1):
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not (_is_int(self.top_k) and self.top_k >= 0):
            raise ValueError(f"top_k must be an integer >= 0 (0 = off), got {self.top_k!r}")
        if not (_finite(self.repetition_penalty) and self.repetition_penalty > 0):
            raise ValueError(
                f"repetition_penalty must be a finite number > 0, got {self.repetition_penalty}"
            )
        # torch wraps a negative seed modulo 2**64 and overflows past it: both would surprise.
        if self.seed is not None and not (_is_int(self.seed) and 0 <= self.seed < SEED_LIMIT):
            raise ValueError(f"seed must be an integer in [0, 2**64), got {self.seed!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature < SAMPLING_EPS

    def torch_generator(self) -> torch.Generator:
        """A generator seeded with `seed`, or from fresh entropy when `seed` is None."""
        g = torch.Generator()
        if self.seed is None:
            g.seed()
        else:
            g.manual_seed(self.seed)
        return g


def _finite(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def apply_repetition_penalty(
    logits: torch.Tensor, seen: torch.Tensor, penalty: float
) -> torch.Tensor:
    """logits (V,), seen (N,) ids: a seen token's logit is divided by `penalty` if positive,
    multiplied by it if negative (CTRL's penalty, as transformers applies it). Returns a copy."""
    if penalty == 1.0 or seen.numel() == 0:
        return logits
    out = logits.clone()
    score = out.gather(0, seen)  # (N,)
    penalized = torch.where(score < 0, score * penalty, score / penalty)
    # A valid penalty such as 1e-300 is 0 in float32, and -inf * 0 is NaN: a masked logit stays
    # masked. A result past float32's range is inf, which `next_token` clamps before the softmax.
    out.scatter_(0, seen, torch.where(score == float("-inf"), score, penalized))
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


def next_token(
    logits: torch.Tensor,
    params: SamplingParams,
    generator: torch.Generator,
    seen: torch.Tensor | None = None,
) -> int:
    """One token id from last-position logits (V,)."""
    logits = logits.float()
    if seen is not None:
        logits = apply_repetition_penalty(logits, seen, params.repetition_penalty)
    if params.greedy:
        return int(torch.argmax(logits))
    # A tiny repetition penalty or temperature overflows float32 to inf, and softmax of inf is
    # NaN: keep logits finite (the largest still wins).
    big = torch.finfo(logits.dtype).max
    logits = (logits / params.temperature).clamp(-big, big)
    logits = top_k_mask(logits, params.top_k)
    logits = top_p_mask(logits, params.top_p)
    probs = torch.softmax(logits, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))

"""Weight-only quantized linear layers, swapped in for the decoder's `nn.Linear`s after loading.

Follows gpt-fast's `quantize.py`: `WeightOnlyInt8Linear` / `WeightOnlyInt4Linear` modules built
from an fp32 weight, and a function that walks the model replacing each `nn.Linear`
(`replace_linear_weight_only_int8_per_channel`). Both layers compute in bf16 and return bf16 (the
kernels' output dtype), for inputs of any leading dims; the Llama math casts to fp32 where it
keeps fp32 (`decoder.layers`).

The output head is the largest matmul: quantized too, and when it is tied to the embedding the
model recomputes its best `RERANK_TOP` logits from the fp32 embedding (`DecoderModel._head`), so
greedy picks and the top of the distribution stay as fp32's.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from semsearch.decoder.heap import release_freed_heap

if TYPE_CHECKING:
    from semsearch.decoder.model import DecoderModel

logger = logging.getLogger(__name__)

WEIGHT_FORMATS = ("fp32", "int8", "int4")
RERANK_TOP = 64  # quantized tied heads: logits recomputed in fp32 for this many best candidates


class Int8Linear(nn.Module):
    """Weight-only int8: W ~= q * scale per output row, symmetric; matmul in bf16 by
    `torch._weight_int8pack_mm`. Follows gpt-fast's `WeightOnlyInt8Linear`."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        weight = weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0  # (out,)
        q = (weight / scale[:, None]).round_().clamp_(-127, 127).to(torch.int8)  # (out, in)
        self.register_buffer("weight", q, persistent=False)
        self.register_buffer("scale", scale.to(torch.bfloat16), persistent=False)
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in) -> (..., out) in bf16."""
        if x.dim() != 2:  # the kernel takes (N, in)
            y = self(x.reshape(-1, self.in_features))  # (N, out)
            return y.view(*x.shape[:-1], self.out_features)
        return torch._weight_int8pack_mm(x.to(torch.bfloat16), self.weight, self.scale)


class Int4Linear(nn.Module):
    """Weight-only 4-bit, asymmetric, per group of 32 inputs: W ~= q * scale + min, q in 0..15;
    matmul in bf16 by `torch._weight_int4pack_mm_for_cpu`.

    Min/max grouping recovers a Q4_1 tensor's own codes: llama.cpp's `quantize_row_q4_1` sets
    min = the block's minimum and scale = (max - min) / 15, so dequantized Q4_1 weights
    re-quantize to the same q (the scales are then rounded to bf16). Follows gpt-fast's
    `WeightOnlyInt4Linear` and torch's `_group_quantize_tensor` (zero = min + 8 * scale).

    Many rows at once (a prefill) are compute-bound, not memory-bound, and the 4-bit kernel is
    slower there than a bf16 GEMM (avx512_bf16), so a bf16 copy of the weight serves inputs of
    `dense_rows` rows or more; one-token decode steps use the 4-bit weight."""

    dense_rows = 16

    def __init__(self, weight: torch.Tensor, group_size: int = 32, keep_dense: bool = True):
        super().__init__()
        weight = weight.detach().float()
        N, K = weight.shape
        if K % group_size or N % 16:
            raise ValueError(
                f"int4 needs in_features ({K}) a multiple of the group size "
                f"({group_size}) and out_features ({N}) a multiple of 16"
            )
        groups = weight.reshape(N, K // group_size, group_size)  # (N, K/G, G)
        lo, hi = groups.amin(dim=-1), groups.amax(dim=-1)  # (N, K/G) each
        scale = ((hi - lo) / 15).clamp(min=1e-12)
        q = groups - lo[..., None]  # (N, K/G, G); then in place: one temporary of the weight's size
        q = q.div_(scale[..., None]).round_().clamp_(0, 15).reshape(N, K).to(torch.int32)
        zero = lo + 8 * scale  # the kernel computes (q - 8) * scale + zero
        sz = torch.stack([scale, zero], dim=-1).transpose(0, 1)  # (K/G, N, 2)
        self.register_buffer(
            "weight", torch._convert_weight_to_int4pack_for_cpu(q, 1), persistent=False
        )
        self.register_buffer("scale_zero", sz.contiguous().to(torch.bfloat16), persistent=False)
        dense = weight.to(torch.bfloat16) if keep_dense else None
        self.register_buffer("dense", dense, persistent=False)
        self.group_size = group_size
        self.in_features, self.out_features = K, N

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in) -> (..., out) in bf16."""
        if x.dim() != 2:  # the kernel takes (N, in)
            y = self(x.reshape(-1, self.in_features))  # (N, out)
            return y.view(*x.shape[:-1], self.out_features)
        x = x.to(torch.bfloat16)
        if self.dense is not None and x.shape[0] >= self.dense_rows:
            return F.linear(x, self.dense)
        return torch._weight_int4pack_mm_for_cpu(x, self.weight, self.group_size, self.scale_zero)


def _replace_linears(module: nn.Module, make: type[nn.Module]) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            setattr(module, name, make(child.weight))  # the fp32 weight is freed with `child`
        else:
            _replace_linears(child, make)


def quantize_linears(model: DecoderModel, weights: str) -> DecoderModel:
    """Swap weight-only quantized layers in for the loaded fp32 model's `nn.Linear`s, in place.

    `weights`: "fp32" (nothing changes), "int8" (`Int8Linear` everywhere) or "int4" (`Int4Linear`
    in the blocks, a bf16 copy kept for prefills; the head 4-bit with no copy when tied, so only
    to pick the candidates that are recomputed in fp32, else int8)."""
    if weights not in WEIGHT_FORMATS:
        raise ValueError(f"weights must be one of {WEIGHT_FORMATS}, got {weights!r}")
    if weights == "fp32":
        return model
    if model.weights != "fp32":
        raise ValueError(f"the model is already quantized ({model.weights})")
    _replace_linears(model.model, Int8Linear if weights == "int8" else Int4Linear)
    release_freed_heap()  # the freed fp32 weights, before the head's large temporaries
    head = model.lm_head.weight
    tied = model.config.tie_word_embeddings
    if weights == "int4" and tied and head.shape[0] % 16 == 0:
        model.lm_head = Int4Linear(head, keep_dense=False)
    else:  # int8, or int4 with no fp32 copy to rerank from (or an odd vocab): 8 bits
        model.lm_head = Int8Linear(head)
    model.rerank_top = RERANK_TOP if tied else 0
    model.weights = weights
    logger.debug("quantized the linear layers to %s", weights)
    return model

"""The Llama block: RMSNorm, grouped-query attention with RoPE and a causal mask, SwiGLU MLP.

Follows transformers' `modeling_llama.py` (`LlamaRMSNorm`, `LlamaAttention`, `LlamaMLP`,
`LlamaDecoderLayer`) and nanoGPT's `model.py` for the shape of the code. Two departures, both for
speed and both exact rearrangements: Q, K and V are one fused matmul (`qkv`), gate and up are one
(`gate_up`); and a one-token decode step groups the query heads by their key/value head, so
grouped-query attention needs no copy of the keys (`(B, KV, n_rep, D)` queries against
`(B, KV, S, D)` keys).

Linear layers hold either an fp32 weight (`Linear`) or weight-only int8 (`Int8Linear`,
`torch._weight_int8pack_mm`: per-output-row scales, bf16 activations).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from semsearch.decoder.config import DecoderConfig
from semsearch.decoder.kv_cache import KVCache
from semsearch.decoder.rope import RotaryEmbedding, apply_rope


class Linear(nn.Module):
    """y = x @ W.T with W (out, in), fp32; no bias (Llama has none)."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight, persistent=False)

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)

    mm = forward  # (N, in) -> (N, out), as Int8Linear.mm / Int4Linear.mm


class Int8Linear(nn.Module):
    """Weight-only int8: W ~= q * scale per output row, symmetric; matmul in bf16.

    Follows gpt-fast's `WeightOnlyInt8Linear` (`quantize.py`)."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0  # (out,)
        q = (weight / scale[:, None]).round_().clamp_(-127, 127).to(torch.int8)  # (out, in)
        self.register_buffer("weight", q, persistent=False)
        self.register_buffer("scale", scale.to(torch.bfloat16), persistent=False)

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    def mm(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in) -> (N, out) in bf16: the decode-step form, no reshapes or casts back."""
        return torch._weight_int8pack_mm(x.to(torch.bfloat16), self.weight, self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mm(x.reshape(-1, x.shape[-1]))  # (N, out)
        return y.view(*x.shape[:-1], self.out_features).to(x.dtype)  # (..., out)


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
        N, K = weight.shape
        if K % group_size or N % 16:
            raise ValueError(
                f"int4 needs in_features ({K}) a multiple of the group size "
                f"({group_size}) and out_features ({N}) a multiple of 16"
            )
        groups = weight.reshape(N, K // group_size, group_size)  # (N, K/G, G)
        lo, hi = groups.amin(dim=-1), groups.amax(dim=-1)  # (N, K/G) each
        scale = ((hi - lo) / 15).clamp(min=1e-12)
        q = torch.round((groups - lo[..., None]) / scale[..., None]).clamp(0, 15)  # (N, K/G, G)
        q = q.reshape(N, K).to(torch.int32)
        zero = lo + 8 * scale  # the kernel computes (q - 8) * scale + zero
        sz = torch.stack([scale, zero], dim=-1).transpose(0, 1)  # (K/G, N, 2)
        self.register_buffer(
            "weight", torch._convert_weight_to_int4pack_for_cpu(q, 1), persistent=False
        )
        self.register_buffer("scale_zero", sz.contiguous().to(torch.bfloat16), persistent=False)
        dense = weight.to(torch.bfloat16) if keep_dense else None
        self.register_buffer("dense", dense, persistent=False)
        self.group_size = group_size
        self.out_features = N

    def mm(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in) -> (N, out) in bf16."""
        x = x.to(torch.bfloat16)
        if self.dense is not None and x.shape[0] >= self.dense_rows:
            return F.linear(x, self.dense)
        return torch._weight_int4pack_mm_for_cpu(x, self.weight, self.group_size, self.scale_zero)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mm(x.reshape(-1, x.shape[-1]))  # (N, out)
        return y.view(*x.shape[:-1], self.out_features).to(x.dtype)  # (..., out)


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight (`LlamaRMSNorm`; computed by `F.rms_norm`)."""

    def __init__(self, weight: torch.Tensor, eps: float) -> None:
        super().__init__()
        self.register_buffer("weight", weight, persistent=False)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


class Attention(nn.Module):
    """Causal grouped-query self-attention; writes its keys and values to the cache if given."""

    def __init__(self, config: DecoderConfig, qkv: nn.Module, o_proj: nn.Module, layer: int):
        super().__init__()
        self.n_head = config.num_attention_heads
        self.n_kv = config.num_key_value_heads
        self.head_dim = config.head_dim
        self.layer = layer
        self.qkv = qkv  # (H + 2 KV) * D outputs: q rows, then k rows, then v rows
        self.o_proj = o_proj

    def forward(
        self, x: torch.Tensor, rope: RotaryEmbedding, start: int, cache: KVCache | None
    ) -> torch.Tensor:
        """x (B, T, C) at positions start .. start+T-1 -> (B, T, C)."""
        B, T, C = x.shape
        H, KV, D = self.n_head, self.n_kv, self.head_dim
        qkv = self.qkv(x).view(B, T, H + 2 * KV, D).transpose(1, 2)  # (B, H + 2KV, T, D)
        cos, sin = rope.tables(start, T)  # (T, D) each
        qk = apply_rope(qkv[:, : H + KV], cos, sin)  # (B, H + KV, T, D)
        q, k, v = qk[:, :H], qk[:, H:], qkv[:, H + KV :]
        if cache is not None:
            cache.write(self.layer, start, k, v)
            k, v = cache.view(self.layer, start + T)  # (B, KV, start + T, D)
        elif start:
            raise ValueError("a forward pass that starts past position 0 needs a KV cache")
        if start == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        else:  # queries at start .. start+T-1 may see keys at 0 .. their own position
            key_pos = torch.arange(start + T)
            mask = key_pos[None, :] <= (start + torch.arange(T))[:, None]  # (T, start + T)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, H * D)
        return self.o_proj(y)

    def decode(self, x: torch.Tensor, pos: int, cache: KVCache, rot: torch.Tensor) -> torch.Tensor:
        """One new token per sequence: x (B, C) at position `pos` -> (B, C) in the linear
        layers' compute dtype. `rot` is RoPE at `pos` as a (D, D) matrix (`RotaryEmbedding`).

        The query heads are grouped by their key/value head, (B, KV, n_rep, D), so each group
        attends to its own (B, KV, pos + 1, D) keys: grouped-query attention without a copy."""
        B = x.shape[0]
        H, KV, D = self.n_head, self.n_kv, self.head_dim
        qkv = self.qkv.mm(x).float().view(B, H + 2 * KV, D)  # (B, H + 2KV, D)
        qk = qkv[:, : H + KV] @ rot  # (B, H + KV, D), rotated
        cache.k[self.layer, :, :, pos] = qk[:, H:]
        cache.v[self.layer, :, :, pos] = qkv[:, H + KV :]
        k = cache.k[self.layer, :, :, : pos + 1]  # (B, KV, pos + 1, D)
        v = cache.v[self.layer, :, :, : pos + 1]
        q = qk[:, :H].view(B, KV, H // KV, D)  # (B, KV, n_rep, D): query heads by kv head
        y = F.scaled_dot_product_attention(q, k, v)  # (B, KV, n_rep, D); all keys are past
        return self.o_proj.mm(y.view(B, H * D))  # (B, C)


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x)), gate and up fused into one matmul."""

    def __init__(self, gate_up: nn.Module, down: nn.Module, intermediate_size: int):
        super().__init__()
        self.gate_up = gate_up  # 2 * I outputs: gate rows, then up rows
        self.down = down
        self.intermediate_size = intermediate_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).split(self.intermediate_size, dim=-1)  # (B, T, I) each
        return self.down(F.silu(gate) * up)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C) -> (B, C), staying in the linear layers' compute dtype in between."""
        gate, up = self.gate_up.mm(x).split(self.intermediate_size, dim=-1)  # (B, I) each
        return self.down.mm(F.silu(gate) * up)


class Block(nn.Module):
    """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, input_norm: RMSNorm, attn: Attention, post_norm: RMSNorm, mlp: MLP):
        super().__init__()
        self.input_layernorm = input_norm
        self.self_attn = attn
        self.post_attention_layernorm = post_norm
        self.mlp = mlp

    def forward(
        self, x: torch.Tensor, rope: RotaryEmbedding, start: int, cache: KVCache | None
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), rope, start, cache)
        return x + self.mlp(self.post_attention_layernorm(x))

    def decode(self, x: torch.Tensor, pos: int, cache: KVCache, rot: torch.Tensor) -> torch.Tensor:
        """One-token step on x (B, C); the residual stream stays fp32."""
        x = x + self.self_attn.decode(self.input_layernorm(x), pos, cache, rot)
        return x + self.mlp.decode(self.post_attention_layernorm(x))

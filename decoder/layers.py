"""The Llama block: RMSNorm, grouped-query attention with RoPE and a causal mask, SwiGLU MLP.

Follows transformers' `modeling_llama.py` (`LlamaRMSNorm`, `LlamaAttention`, `LlamaMLP`,
`LlamaDecoderLayer`) and nanoGPT's `model.py` for the shape of the code. Two departures, both for
speed and both exact rearrangements: Q, K and V are one fused matmul (`qkv_proj`), gate and up are
one (`gate_up_proj`), as in transformers' Phi-3; and a one-token decode step groups the query
heads by their key/value head, so grouped-query attention needs no copy of the keys
(`(B, KV, n_rep, D)` queries against `(B, KV, S, D)` keys).

The linear layers are `nn.Linear` (fp32); `decoder.quantized.quantize_linears` may swap in
weight-only int8/int4 layers, which return bf16. Where the math keeps fp32 (RoPE, the cache, the
prefill's SwiGLU) it casts their output with `.float()`, free for fp32 layers; a decode step keeps
bf16 between the MLP's matmuls, and residual adds promote bf16 to fp32 exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from semsearch.decoder.config import DecoderConfig
from semsearch.decoder.kv_cache import KVCache
from semsearch.decoder.rope import RotaryEmbedding, apply_rope


class Attention(nn.Module):
    """Causal grouped-query self-attention; writes its keys and values to the cache if given."""

    def __init__(self, config: DecoderConfig, layer: int, device: str | None = None) -> None:
        super().__init__()
        self.n_head = config.num_attention_heads
        self.n_kv = config.num_key_value_heads
        self.head_dim = config.head_dim
        self.layer = layer
        H, KV, D, C = self.n_head, self.n_kv, self.head_dim, config.hidden_size
        # (H + 2 KV) * D outputs: q rows, then k rows, then v rows
        self.qkv_proj = nn.Linear(C, (H + 2 * KV) * D, bias=False, device=device)
        self.o_proj = nn.Linear(H * D, C, bias=False, device=device)

    def forward(
        self, x: torch.Tensor, rope: RotaryEmbedding, start: int, cache: KVCache | None
    ) -> torch.Tensor:
        """x (B, T, C) at positions start .. start+T-1 -> (B, T, C)."""
        B, T, C = x.shape
        H, KV, D = self.n_head, self.n_kv, self.head_dim
        qkv = self.qkv_proj(x).float().view(B, T, H + 2 * KV, D).transpose(1, 2)  # (B, H+2KV, T, D)
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
        y = y.transpose(1, 2).reshape(B, T, H * D)  # (B, T, H * D)
        return self.o_proj(y)

    def decode(self, x: torch.Tensor, pos: int, cache: KVCache, rot: torch.Tensor) -> torch.Tensor:
        """One new token per sequence: x (B, C) at position `pos` -> (B, C) in the linear
        layers' output dtype. `rot` is RoPE at `pos` as a (D, D) matrix (`RotaryEmbedding`).

        The query heads are grouped by their key/value head, (B, KV, n_rep, D), so each group
        attends to its own (B, KV, pos + 1, D) keys: grouped-query attention without a copy."""
        B = x.shape[0]
        H, KV, D = self.n_head, self.n_kv, self.head_dim
        qkv = self.qkv_proj(x).float().view(B, H + 2 * KV, D)  # (B, H + 2KV, D)
        qk = qkv[:, : H + KV] @ rot  # (B, H + KV, D), rotated
        cache.k[self.layer, :, :, pos] = qk[:, H:]
        cache.v[self.layer, :, :, pos] = qkv[:, H + KV :]
        k = cache.k[self.layer, :, :, : pos + 1]  # (B, KV, pos + 1, D)
        v = cache.v[self.layer, :, :, : pos + 1]
        q = qk[:, :H].view(B, KV, H // KV, D)  # (B, KV, n_rep, D): query heads by kv head
        y = F.scaled_dot_product_attention(q, k, v)  # (B, KV, n_rep, D); all keys are past
        return self.o_proj(y.view(B, H * D))  # (B, C)


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x)), gate and up fused into one matmul."""

    def __init__(self, config: DecoderConfig, device: str | None = None) -> None:
        super().__init__()
        C, inner = config.hidden_size, config.intermediate_size
        self.intermediate_size = inner
        self.gate_up_proj = nn.Linear(C, 2 * inner, bias=False, device=device)  # gate, up rows
        self.down_proj = nn.Linear(inner, C, bias=False, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, T, C), fp32 between the matmuls."""
        gate_up = self.gate_up_proj(x).float()  # (B, T, 2I)
        gate, up = gate_up.split(self.intermediate_size, dim=-1)  # (B, T, I) each
        return self.down_proj(F.silu(gate) * up)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C) -> (B, C), staying in the linear layers' output dtype in between."""
        gate, up = self.gate_up_proj(x).split(self.intermediate_size, dim=-1)  # (B, I) each
        return self.down_proj(F.silu(gate) * up)


class Block(nn.Module):
    """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x)).

    The norms are `LlamaRMSNorm`'s x / sqrt(mean(x^2) + eps) * weight, as `nn.RMSNorm`."""

    def __init__(self, config: DecoderConfig, layer: int, device: str | None = None) -> None:
        super().__init__()
        C, eps = config.hidden_size, config.rms_norm_eps
        self.input_layernorm = nn.RMSNorm(C, eps=eps, device=device)
        self.self_attn = Attention(config, layer, device)
        self.post_attention_layernorm = nn.RMSNorm(C, eps=eps, device=device)
        self.mlp = MLP(config, device)

    def forward(
        self, x: torch.Tensor, rope: RotaryEmbedding, start: int, cache: KVCache | None
    ) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C); the residual stream stays fp32."""
        x = x + self.self_attn(self.input_layernorm(x), rope, start, cache)
        return x + self.mlp(self.post_attention_layernorm(x))

    def decode(self, x: torch.Tensor, pos: int, cache: KVCache, rot: torch.Tensor) -> torch.Tensor:
        """One-token step on x (B, C); the residual stream stays fp32."""
        x = x + self.self_attn.decode(self.input_layernorm(x), pos, cache, rot)
        return x + self.mlp.decode(self.post_attention_layernorm(x))

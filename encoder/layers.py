"""The blocks of a BERT encoder, written out like nanoGPT's `model.py`.

Follows transformers' `models/bert/modeling_bert.py` (the math and the parameter names, so a
checkpoint's state dict maps 1:1) and TEI's unpadded batching: the dense ops (embedding LayerNorm,
Q/K/V and output projections, feed-forward, LayerNorms) run on the packed real tokens `(N, C)` of a
batch; only attention sees the padded `(B, T)` layout, through `Packing.pad` / `Packing.pack`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from encoder.config import BertConfig


@dataclass(frozen=True)
class Packing:
    """Where the N real tokens of a padded (B, T) batch sit, and the attention mask for that batch.

    `index is None` means the batch has no padding at all (every row full): pad/pack are views then.
    """

    batch_size: int  # B
    seq_len: int  # T
    lengths: Tensor  # (B,) int64, real tokens per row
    seq_ids: Tensor  # (N,) int64, the row each packed token belongs to
    position_ids: Tensor  # (N,) int64, the column of each packed token
    index: Tensor | None  # (N,) int64, flat positions into B*T of the real tokens
    attn_mask: Tensor | None  # (B, 1, 1, T) float, additive: 0 for real keys, dtype-min for padding

    @classmethod
    def from_mask(cls, attention_mask: Tensor, dtype: torch.dtype = torch.float32) -> Packing:
        """`attention_mask` (B, T), 1 for real tokens; any layout (right padding is the usual)."""
        B, T = attention_mask.shape
        mask = attention_mask.bool()
        lengths = mask.sum(dim=1)  # (B,)
        if bool(mask.all()):
            positions = torch.arange(T).repeat(B)  # (B*T,)
            seq_ids = torch.arange(B).repeat_interleave(T)  # (B*T,)
            return cls(B, T, lengths, seq_ids, positions, None, None)
        index = mask.flatten().nonzero().squeeze(1)  # (N,)
        attn_mask = torch.zeros(B, 1, 1, T, dtype=dtype)
        attn_mask.masked_fill_(~mask[:, None, None, :], torch.finfo(dtype).min)  # (B, 1, 1, T)
        return cls(B, T, lengths, index // T, index % T, index, attn_mask)

    @property
    def num_tokens(self) -> int:
        return int(self.position_ids.shape[0])

    def pack(self, x: Tensor) -> Tensor:
        """(B, T, ...) -> (N, ...): keep the real tokens."""
        flat = x.reshape(self.batch_size * self.seq_len, *x.shape[2:])  # (B*T, ...)
        return flat if self.index is None else flat.index_select(0, self.index)

    def pad(self, x: Tensor) -> Tensor:
        """(N, D) -> (B, T, D), zeros at padding."""
        B, T, D = self.batch_size, self.seq_len, x.shape[-1]
        if self.index is None:
            return x.view(B, T, D)  # (B, T, D)
        out = x.new_zeros(B * T, D)
        out.index_copy_(0, self.index, x)
        return out.view(B, T, D)  # (B, T, D)


class BertEmbeddings(nn.Module):
    """Word + absolute position + token-type embeddings, then LayerNorm (inference: no dropout)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        C = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, C, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, C)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, C)
        self.LayerNorm = nn.LayerNorm(C, eps=config.layer_norm_eps)

    def forward(self, input_ids: Tensor, position_ids: Tensor, token_type_ids: Tensor) -> Tensor:
        x = self.word_embeddings(input_ids)  # (N, C)
        x = x + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings(position_ids)
        return self.LayerNorm(x)


class BertSelfAttention(nn.Module):
    """Multi-head self-attention over the padded layout, with the additive padding mask (SDPA)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        C = config.hidden_size
        self.n_head = config.num_attention_heads
        self.head_dim = config.head_dim
        self.query = nn.Linear(C, C)
        self.key = nn.Linear(C, C)
        self.value = nn.Linear(C, C)
        # Q, K and V as one (3C, C) matmul, built by `fuse_qkv()` after the weights are loaded; not
        # part of the state dict, so checkpoints keep their query/key/value names.
        self.register_buffer("qkv_weight", None, persistent=False)
        self.register_buffer("qkv_bias", None, persistent=False)

    @torch.no_grad()
    def fuse_qkv(self) -> None:
        self.qkv_weight = torch.cat([self.query.weight, self.key.weight, self.value.weight], dim=0)
        self.qkv_bias = torch.cat([self.query.bias, self.key.bias, self.value.bias], dim=0)

    def forward(self, x: Tensor, packing: Packing) -> Tensor:
        N, C = x.shape
        if self.qkv_weight is not None:
            qkv = F.linear(x, self.qkv_weight, self.qkv_bias)  # (N, 3C)
        else:
            qkv = torch.cat([self.query(x), self.key(x), self.value(x)], dim=1)  # (N, 3C)
        B, T = packing.batch_size, packing.seq_len
        qkv = packing.pad(qkv).view(B, T, 3, self.n_head, self.head_dim)  # (B, T, 3, nh, hd)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, nh, T, hd)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=packing.attn_mask)  # (B, nh, T, hd)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        return packing.pack(y)  # (N, C)


class BertSelfOutput(nn.Module):
    """Attention output projection, residual, LayerNorm (post-LN, as in BERT)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, h: Tensor, x: Tensor) -> Tensor:
        return self.LayerNorm(self.dense(h) + x)


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, x: Tensor, packing: Packing) -> Tensor:
        return self.output(self.self(x, packing), x)


class BertIntermediate(nn.Module):
    """Feed-forward up-projection with the exact (erf) GELU."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(self.dense(x))  # (N, 4C)


class BertOutput(nn.Module):
    """Feed-forward down-projection, residual, LayerNorm."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, h: Tensor, x: Tensor) -> Tensor:
        return self.LayerNorm(self.dense(h) + x)


class BertLayer(nn.Module):
    """One encoder block: x = LN(x + attn(x)); x = LN(x + ffn(x))."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, x: Tensor, packing: Packing) -> Tensor:
        x = self.attention(x, packing)  # (N, C)
        return self.output(self.intermediate(x), x)  # (N, C)

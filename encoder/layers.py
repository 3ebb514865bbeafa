"""The blocks of a BERT encoder, written out like nanoGPT's `model.py`.

Follows transformers' `models/bert/modeling_bert.py` (the math and the parameter names, so a
checkpoint's state dict maps 1:1) and TEI's unpadded batching: the dense ops (embedding LayerNorm,
Q/K/V and output projections, feed-forward, LayerNorms) run on the packed real tokens `(N, C)` of a
batch; only attention sees a padded layout, one `AttentionGroup` of similar-length sequences at a
time (`AttentionGroup.pad` / `unpad`), so a batch of mixed lengths pads little even there.

The blocks take the batch's layout: a `Packing` (the above, for serving) or a `Padding`, the plain
padded (B, T, C) batch with an additive mask over every column, as transformers runs it. Packing
has data-dependent shapes; padding has none, so it is the layout the ONNX export traces.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semsearch.encoder.config import BertConfig

# Attention groups: sequences (sorted by length) share one padded SDPA call while the padded
# attention work G * T^2 stays within PAD_SLACK of the real work sum(L^2); sequences of at most
# SMALL_SEQ tokens always share a call (their attention is cheap; a call each would cost more).
PAD_SLACK = 1.25
SMALL_SEQ = 32


@dataclass(frozen=True)
class AttentionGroup:
    """Sequences of similar length attended in one call: packed rows [start, stop), padded to
    (G, T) with an additive mask; `slots is None` means no padding (all G sequences are T long)."""

    start: int
    stop: int
    batch_size: int  # G
    seq_len: int  # T
    slots: Tensor | None  # (stop - start,) int64, position of each packed token in the G*T layout
    attn_mask: Tensor | None  # (G, 1, 1, T) float: 0 for real keys, dtype-min for padding

    @classmethod
    def build(cls, start: int, lengths: list[int], dtype: torch.dtype) -> AttentionGroup:
        G, T = len(lengths), max(lengths)
        stop = start + sum(lengths)
        if min(lengths) == T:
            return cls(start, stop, G, T, None, None)
        real = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # (G, T)
        slots = real.flatten().nonzero().squeeze(1)  # (n,)
        attn_mask = torch.zeros(G, 1, 1, T, dtype=dtype)
        attn_mask.masked_fill_(~real[:, None, None, :], torch.finfo(dtype).min)  # (G, 1, 1, T)
        return cls(start, stop, G, T, slots, attn_mask)

    def pad(self, x: Tensor) -> Tensor:
        """This group's packed rows (n, D) -> (G, T, D), zeros at padding."""
        G, T, D = self.batch_size, self.seq_len, x.shape[-1]
        if self.slots is None:
            return x.view(G, T, D)  # (G, T, D)
        out = x.new_zeros(G * T, D)
        out.index_copy_(0, self.slots, x)
        return out.view(G, T, D)  # (G, T, D)

    def unpad(self, y: Tensor) -> Tensor:
        """(G, T, D) -> this group's packed rows (n, D)."""
        flat = y.reshape(self.batch_size * self.seq_len, y.shape[-1])  # (G*T, D)
        return flat if self.slots is None else flat.index_select(0, self.slots)


def group_by_length(lengths: list[int]) -> list[list[int]]:
    """Split lengths sorted longest first into runs that pad little (see PAD_SLACK, SMALL_SEQ)."""
    groups: list[list[int]] = []
    work = 0
    for length in lengths:
        if groups:
            group = groups[-1]
            T = group[0]
            if T <= SMALL_SEQ or (len(group) + 1) * T * T <= PAD_SLACK * (work + length**2):
                group.append(length)
                work += length**2
                continue
        groups.append([length])
        work = length**2
    return groups


@dataclass(frozen=True)
class Packing:
    """Where the N real tokens of a padded (B, T) batch go in the packed (N, C) layout.

    Sequences are packed longest first, one after another, so each attention group is a contiguous
    slice of rows. `index is None` means the batch has no padding at all: packing is a view then.
    """

    batch_size: int  # B
    seq_len: int  # T
    lengths: Tensor  # (B,) int64, real tokens per row
    seq_ids: Tensor  # (N,) int64, the row each packed token belongs to
    position_ids: Tensor  # (N,) int64, the column of each packed token
    index: Tensor | None  # (N,) int64, flat positions into B*T of the packed tokens
    groups: tuple[AttentionGroup, ...]

    @classmethod
    def from_mask(cls, attention_mask: Tensor, dtype: torch.dtype = torch.float32) -> Packing:
        """`attention_mask` (B, T), 1 for real tokens; any layout (right padding is the usual)."""
        B, T = attention_mask.shape
        mask = attention_mask.bool()
        lengths = mask.sum(dim=1)  # (B,)
        if bool(mask.all()):
            positions = torch.arange(T).repeat(B)  # (B*T,)
            seq_ids = torch.arange(B).repeat_interleave(T)  # (B*T,)
            group = AttentionGroup(0, B * T, B, T, None, None)
            return cls(B, T, lengths, seq_ids, positions, None, (group,))
        order = torch.argsort(lengths, descending=True, stable=True)  # (B,)
        sorted_pos = mask[order].flatten().nonzero().squeeze(1)  # (N,) into the sorted (B, T)
        index = order[sorted_pos // T] * T + sorted_pos % T  # (N,) into the original (B, T)
        groups, start = [], 0
        for run in group_by_length(lengths[order].tolist()):
            groups.append(AttentionGroup.build(start, run, dtype))
            start = groups[-1].stop
        return cls(B, T, lengths, index // T, index % T, index, tuple(groups))

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


@dataclass(frozen=True)
class Padding:
    """A padded (B, T) batch attended as it is: every column is computed, padded keys are masked.

    The mask is transformers' extended attention mask, (1 - mask) * dtype-min: the form that
    onnxruntime's attention fusion recognizes in an exported graph."""

    attn_mask: Tensor  # (B, 1, 1, T) float: 0 for real keys, dtype-min for padding

    @classmethod
    def from_mask(cls, attention_mask: Tensor, dtype: torch.dtype = torch.float32) -> Padding:
        """`attention_mask` (B, T), 1 for real tokens."""
        mask = attention_mask[:, None, None, :].to(dtype)  # (B, 1, 1, T)
        return cls((1.0 - mask) * torch.finfo(dtype).min)


Layout = Packing | Padding


class BertEmbeddings(nn.Module):
    """Word + absolute position + token-type embeddings, then LayerNorm (inference: no dropout)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        C = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, C, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, C)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, C)
        self.LayerNorm = nn.LayerNorm(C, eps=config.layer_norm_eps)
        # Column positions of a padded batch, sliced to T (a constant in an exported graph); not in
        # the state dict, as in transformers.
        positions = torch.arange(config.max_position_embeddings).unsqueeze(0)  # (1, P)
        self.register_buffer("position_ids", positions, persistent=False)

    def forward(self, input_ids: Tensor, position_ids: Tensor, token_type_ids: Tensor) -> Tensor:
        """Ids and positions of any shape, (N,) packed or (B, T) padded -> (..., C)."""
        x = self.word_embeddings(input_ids)  # (N, C)
        x = x + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings(position_ids)
        return self.LayerNorm(x)


class BertSelfAttention(nn.Module):
    """Multi-head self-attention with the additive padding mask: one SDPA call per group of
    similar-length sequences (packed layout), or one over the whole padded batch."""

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

    def attend(self, q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None) -> Tensor:
        """q, k, v (G, nh, T, hd) and the additive mask (G, 1, 1, T) -> (G, T, C)."""
        G, _, T, _ = q.shape
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (G, nh, T, hd)
        return y.transpose(1, 2).reshape(G, T, self.n_head * self.head_dim)  # (G, T, C)

    def forward(self, x: Tensor, layout: Layout) -> Tensor:
        if isinstance(layout, Padding):
            return self._forward_padded(x, layout)
        if self.qkv_weight is not None:
            qkv = F.linear(x, self.qkv_weight, self.qkv_bias)  # (N, 3C)
        else:
            qkv = torch.cat([self.query(x), self.key(x), self.value(x)], dim=1)  # (N, 3C)
        outs = []
        for group in layout.groups:
            G, T = group.batch_size, group.seq_len
            h = group.pad(qkv[group.start : group.stop])  # (G, T, 3C)
            q, k, v = h.view(G, T, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
            outs.append(group.unpad(self.attend(q, k, v, group.attn_mask)))  # (n, C)
        return outs[0] if len(outs) == 1 else torch.cat(outs)  # (N, C)

    def _forward_padded(self, x: Tensor, layout: Padding) -> Tensor:
        """(B, T, C) -> (B, T, C). Separate Q, K, V projections, each reshaped and transposed on
        its own: the pattern onnxruntime's attention fusion matches in an exported graph."""
        B, T, C = x.shape
        q = self.query(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, nh, T, hd)
        k = self.key(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, nh, T, hd)
        v = self.value(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, nh, T, hd)
        return self.attend(q, k, v, layout.attn_mask)  # (B, T, C)


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

    def forward(self, x: Tensor, layout: Layout) -> Tensor:
        return self.output(self.self(x, layout), x)


class BertIntermediate(nn.Module):
    """Feed-forward up-projection with the exact (erf) GELU."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(self.dense(x))  # (N, intermediate_size)


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

    def forward(self, x: Tensor, layout: Layout) -> Tensor:
        """(N, C) packed or (B, T, C) padded, as `layout` says; the same shape out."""
        x = self.attention(x, layout)
        return self.output(self.intermediate(x), x)

"""The BERT encoder: embeddings, N post-LN transformer blocks, and mean-pooled sentence vectors.

Follows transformers' `BertModel` (without the pooler: sentence-transformers models mean-pool the
last hidden state instead) and nanoGPT's layout. Parameter names equal the checkpoint's keys
(`embeddings.word_embeddings.weight`, `encoder.layer.0.attention.self.query.weight`, ...), so a
`model.safetensors` state dict maps 1:1 (see `encoder/weights.py`).

Two layouts of the same blocks (`encoder/layers.py`): `forward` and `sentence_embeddings` pack the
real tokens (serving); `forward_padded` runs the padded batch as it is, no shape depending on the
mask, which is what `encoder/onnx/export.py` traces.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from semsearch.encoder.config import BertConfig
from semsearch.encoder.layers import BertEmbeddings, BertLayer, Layout, Packing, Padding
from semsearch.encoder.pooling import l2_normalize, mean_pool_packed


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, x: Tensor, layout: Layout) -> Tensor:
        for block in self.layer:
            x = block(x, layout)  # (N, C) packed or (B, T, C) padded
        return x


class BertModel(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)

    def fuse_qkv(self) -> None:
        """Concatenate each layer's Q/K/V weights into one matmul; call after loading weights."""
        for block in self.encoder.layer:
            block.attention.self.fuse_qkv()

    def forward_packed(self, input_ids: Tensor, token_type_ids: Tensor, packing: Packing) -> Tensor:
        """Packed real tokens in: `input_ids`, `token_type_ids` (N,) -> last hidden state (N, C)."""
        x = self.embeddings(input_ids, packing.position_ids, token_type_ids)  # (N, C)
        return self.encoder(x, packing)  # (N, C)

    def _check_inputs(
        self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None
    ) -> None:
        B, T = input_ids.shape
        if attention_mask.shape != (B, T):
            raise ValueError(
                f"attention_mask shape {tuple(attention_mask.shape)} != input_ids shape {(B, T)}"
            )
        if token_type_ids is not None and token_type_ids.shape != (B, T):
            raise ValueError(
                f"token_type_ids shape {tuple(token_type_ids.shape)} != input_ids shape {(B, T)}"
            )
        if T > self.config.max_position_embeddings:
            raise ValueError(
                f"sequence length {T} exceeds max_position_embeddings "
                f"({self.config.max_position_embeddings}); truncate the input"
            )

    def _packed_inputs(
        self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None
    ) -> tuple[Tensor, Tensor, Packing]:
        self._check_inputs(input_ids, attention_mask, token_type_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        packing = Packing.from_mask(attention_mask, dtype=self.embeddings.LayerNorm.weight.dtype)
        return packing.pack(input_ids), packing.pack(token_type_ids), packing

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None
    ) -> Tensor:
        """Padded batch in, (B, T) int64 each -> last hidden state (B, T, C), zeros at padding."""
        ids, types, packing = self._packed_inputs(input_ids, attention_mask, token_type_ids)
        return packing.pad(self.forward_packed(ids, types, packing))  # (B, T, C)

    def forward_padded(
        self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None
    ) -> Tensor:
        """Padded batch in, (B, T) int64 each -> last hidden state (B, T, C), padding positions
        computed too (mask them). Every column runs; no shape depends on the mask, so it traces."""
        if not torch.jit.is_tracing():  # traced, the checks would only warn about constants
            self._check_inputs(input_ids, attention_mask, token_type_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        T = input_ids.shape[1]
        positions = self.embeddings.position_ids[:, :T]  # (1, T)
        x = self.embeddings(input_ids, positions, token_type_ids)  # (B, T, C)
        padding = Padding.from_mask(attention_mask, dtype=x.dtype)  # mask (B, 1, 1, T)
        return self.encoder(x, padding)  # (B, T, C)

    def sentence_embeddings(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        token_type_ids: Tensor | None = None,
        normalize: bool = True,
    ) -> Tensor:
        """Padded batch in, (B, T) int64 each -> mean-pooled (and L2-normalized) vectors (B, C).

        Trailing columns that are padding in every row are dropped first, so extra padding never
        changes a vector.
        """
        real_cols = attention_mask.bool().any(dim=0).nonzero()
        T = int(real_cols.max()) + 1 if real_cols.numel() else 0
        input_ids, attention_mask = input_ids[:, :T], attention_mask[:, :T]
        if token_type_ids is not None:
            token_type_ids = token_type_ids[:, :T]
        ids, types, packing = self._packed_inputs(input_ids, attention_mask, token_type_ids)
        hidden = self.forward_packed(ids, types, packing)  # (N, C)
        pooled = mean_pool_packed(hidden, packing.seq_ids, packing.lengths)  # (B, C)
        return l2_normalize(pooled) if normalize else pooled

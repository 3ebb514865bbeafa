"""The Llama decoder: embeddings, blocks, final norm, output head (tied to the embedding or not).

Follows transformers' `LlamaModel` / `LlamaForCausalLM` for the math and the parameter names, and
nanoGPT's `GPT` for the shape (a `model` ModuleDict, `lm_head`, `forward(idx) -> logits`, built
from a config with seeded random weights). The names are the checkpoint names documented in
`decoder.weights` (transformers' Llama names with q/k/v and gate/up fused); `decoder.weights`
loads a checkpoint into the model and `decoder.quantized` swaps quantized layers in for its
`nn.Linear`s.

A forward pass takes the ids of positions start .. start+T-1; with a `KVCache` it reads earlier
positions from the cache and writes its own, so generation is one prefill of the prompt and then
one-token decode steps. `last_only=True` computes the output head for the last position only (all
that sampling needs; the head is the largest matmul).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from semsearch.decoder.config import DecoderConfig
from semsearch.decoder.kv_cache import KVCache
from semsearch.decoder.layers import Block
from semsearch.decoder.rope import RotaryEmbedding

logger = logging.getLogger(__name__)


class DecoderModel(nn.Module):
    def __init__(self, config: DecoderConfig, seed: int | None = 0) -> None:
        """A Llama model with random weights drawn from `seed` (`init_weights`); `seed=None`
        leaves the parameters on the meta device, no memory, for a loader to fill
        (`decoder.weights.load_weights`)."""
        super().__init__()
        self.config = c = config
        # Built on the meta device: no default init (it would draw from the global RNG).
        # `_weight`: an empty embedding, not N(0, 1) first (slow on the meta device).
        embedding = torch.empty(c.vocab_size, c.hidden_size, device="meta")
        self.model = nn.ModuleDict(
            dict(
                embed_tokens=nn.Embedding(c.vocab_size, c.hidden_size, _weight=embedding),
                layers=nn.ModuleList(Block(c, i, "meta") for i in range(c.num_hidden_layers)),
                norm=nn.RMSNorm(c.hidden_size, eps=c.rms_norm_eps, device="meta"),
            )
        )
        self.lm_head = nn.Linear(c.hidden_size, c.vocab_size, bias=False, device="meta")
        self.tie_weights()
        self.rope = RotaryEmbedding(c.head_dim, c.rope_theta, c.max_position_embeddings)
        self.weights = "fp32"  # the linear layers' format, set by `quantize_linears`
        # > 0 when the head is quantized and tied: its best `rerank_top` logits are recomputed
        # from the fp32 embedding (`_head`)
        self.rerank_top = 0
        if seed is not None:
            self.to_empty(device="cpu")  # new parameters: the tie is made again
            self.tie_weights()
            self.init_weights(seed)

    def tie_weights(self) -> None:
        """The output head shares the embedding's weight when the config ties them."""
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    @torch.no_grad()
    def init_weights(self, seed: int) -> None:
        """transformers' Llama init (`_init_weights`): matrices ~ N(0, initializer_range), norm
        weights 1; drawn from a generator seeded with `seed`, so the global RNG is untouched."""
        g = torch.Generator().manual_seed(seed)
        for p in self.parameters():  # a tied head is the embedding, drawn once
            if p.dim() == 1:
                p.fill_(1.0)
            else:
                p.normal_(0.0, self.config.initializer_range, generator=g)

    def new_cache(self, max_len: int, batch_size: int = 1) -> KVCache:
        c = self.config
        if max_len > c.max_position_embeddings:
            raise ValueError(
                f"max_len {max_len} exceeds the context length {c.max_position_embeddings}"
            )
        return KVCache(c.num_hidden_layers, c.num_key_value_heads, c.head_dim, max_len, batch_size)

    def forward(
        self,
        ids: torch.Tensor,
        start: int = 0,
        cache: KVCache | None = None,
        last_only: bool = False,
    ) -> torch.Tensor:
        """ids (B, T) at positions start .. start+T-1 -> logits (B, T, V), or (B, 1, V)."""
        B, T = ids.shape
        if start + T > self.config.max_position_embeddings:
            raise ValueError(
                f"positions up to {start + T} exceed the context length "
                f"{self.config.max_position_embeddings}"
            )
        if cache is not None and start != cache.length:
            raise ValueError(f"cache holds {cache.length} positions but start is {start}")
        if T == 1 and cache is not None:
            return self.decode_step(ids[:, 0], start, cache)[:, None]  # (B, 1, V)
        x = self._blocks(ids, start, cache)  # (B, T, C)
        if last_only:
            x = x[:, -1:]  # (B, 1, C)
        h = self.model.norm(x)  # (B, T or 1, C)
        logits = self._head(h.view(-1, h.shape[-1]))  # (B * (T or 1), V)
        return logits.view(B, -1, logits.shape[-1])  # (B, T or 1, V)

    def extend(self, ids: torch.Tensor, start: int, cache: KVCache) -> None:
        """Write the keys and values of ids (B, T) at positions start .. start+T-1 to `cache`,
        without the output head: a prefill chunk whose logits nobody reads."""
        if start != cache.length:
            raise ValueError(f"cache holds {cache.length} positions but start is {start}")
        self._blocks(ids, start, cache)

    def _blocks(self, ids: torch.Tensor, start: int, cache: KVCache | None) -> torch.Tensor:
        """ids (B, T) -> the last block's output (B, T, C); the cache then holds start + T."""
        x = self.model.embed_tokens(ids)  # (B, T, C)
        for block in self.model.layers:
            x = block(x, self.rope, start, cache)
        if cache is not None:
            cache.length = start + ids.shape[1]
        return x

    def decode_step(self, ids: torch.Tensor, pos: int, cache: KVCache) -> torch.Tensor:
        """One token per sequence, ids (B,) at position `pos` -> logits (B, V) in fp32.

        The hot loop of generation: 2-D activations, no reshapes of the residual stream, RoPE as
        one (D, D) matmul shared by all layers, quantized matmuls kept in bf16 in between."""
        x = self.model.embed_tokens(ids)  # (B, C)
        rot = self.rope.rotation(pos)  # (D, D)
        for block in self.model.layers:
            x = block.decode(x, pos, cache, rot)
        cache.length = pos + 1
        return self._head(self.model.norm(x))

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        """h (N, C) -> logits (N, V) fp32. With a quantized tied head (`rerank_top` > 0) the
        `rerank_top` largest logits are recomputed exactly from the fp32 embedding: greedy picks
        and the top of the distribution are then as fp32's, at the quantized head's cost."""
        logits = self.lm_head(h).float()  # (N, V)
        if not self.rerank_top:
            return logits
        top = logits.topk(self.rerank_top, dim=-1).indices  # (N, k)
        rows = self.model.embed_tokens.weight[top]  # (N, k, C)
        exact = (rows @ h.float()[:, :, None])[..., 0]  # (N, k)
        return logits.scatter_(1, top, exact)

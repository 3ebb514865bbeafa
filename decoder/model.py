"""The Llama decoder: embeddings, blocks, final norm, tied output head.

Follows transformers' `LlamaModel` / `LlamaForCausalLM` for the math and nanoGPT's `GPT` for the
shape (`forward(idx) -> logits`). A forward pass takes the ids of positions start .. start+T-1;
with a `KVCache` it reads earlier positions from the cache and writes its own, so generation is
one prefill of the prompt and then one-token decode steps. `last_only=True` computes the output
head for the last position only (all that sampling needs; the head is the largest matmul).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from semsearch.decoder.config import DecoderConfig
from semsearch.decoder.gguf import GGUFFile, llama_state_dict
from semsearch.decoder.kv_cache import KVCache
from semsearch.decoder.layers import MLP, Attention, Block, Int4Linear, Int8Linear, Linear, RMSNorm
from semsearch.decoder.rope import RotaryEmbedding

logger = logging.getLogger(__name__)

WEIGHT_FORMATS = ("fp32", "int8", "int4")
RERANK_TOP = 64  # quantized heads: logits recomputed in fp32 for this many best candidates


class DecoderModel(nn.Module):
    def __init__(
        self,
        config: DecoderConfig,
        state: Mapping[str, torch.Tensor | np.ndarray],
        weights: str = "fp32",
    ) -> None:
        """`state`: fp32 tensors under Hugging Face names (Q/K rows in HF order).

        `weights`: "fp32"; "int8" for weight-only int8 linear layers and output head; "int4"
        for the GGUF's Q4_1 codes in 4-bit matmuls (and a 4-bit tied head whose top 64 logits
        are recomputed in fp32)."""
        super().__init__()
        if weights not in WEIGHT_FORMATS:
            raise ValueError(f"weights must be one of {WEIGHT_FORMATS}, got {weights!r}")
        self.config = config
        self.weights = weights
        self.rerank_top = RERANK_TOP
        linear = {"fp32": Linear, "int8": Int8Linear, "int4": Int4Linear}[weights]
        c = config

        def get(name: str, shape: tuple[int, ...]) -> torch.Tensor:
            t = torch.as_tensor(state[name])
            if tuple(t.shape) != shape:
                raise ValueError(f"{name}: expected shape {shape}, got {tuple(t.shape)}")
            return t.float().contiguous()

        C, D, F_ = c.hidden_size, c.head_dim, c.intermediate_size  # F_: FFN width
        self.embed_tokens = get("model.embed_tokens.weight", (c.vocab_size, C))
        blocks = []
        for i in range(c.num_hidden_layers):
            p = f"model.layers.{i}."
            qkv = torch.cat(
                [  # (H D + 2 KV D, C)
                    get(p + "self_attn.q_proj.weight", (c.num_attention_heads * D, C)),
                    get(p + "self_attn.k_proj.weight", (c.num_key_value_heads * D, C)),
                    get(p + "self_attn.v_proj.weight", (c.num_key_value_heads * D, C)),
                ]
            )
            gate_up = torch.cat(
                [  # (2 F_, C)
                    get(p + "mlp.gate_proj.weight", (F_, C)),
                    get(p + "mlp.up_proj.weight", (F_, C)),
                ]
            )
            o_proj = get(p + "self_attn.o_proj.weight", (C, c.num_attention_heads * D))
            attn = Attention(c, linear(qkv), linear(o_proj), layer=i)
            mlp = MLP(linear(gate_up), linear(get(p + "mlp.down_proj.weight", (C, F_))), F_)
            blocks.append(
                Block(
                    RMSNorm(get(p + "input_layernorm.weight", (C,)), c.rms_norm_eps),
                    attn,
                    RMSNorm(get(p + "post_attention_layernorm.weight", (C,)), c.rms_norm_eps),
                    mlp,
                )
            )
        self.layers = nn.ModuleList(blocks)
        self.norm = RMSNorm(get("model.norm.weight", (C,)), c.rms_norm_eps)
        head = (
            self.embed_tokens if c.tie_word_embeddings else get("lm_head.weight", (c.vocab_size, C))
        )
        if weights == "int4" and c.tie_word_embeddings and c.vocab_size % 16 == 0:
            # 4 bits only pick candidates; `_head` recomputes the best 64 from the fp32 embedding
            self.lm_head: nn.Module = Int4Linear(head, keep_dense=False)
        elif weights == "int4":  # no fp32 copy to rerank from (or an odd vocab): 8 bits
            self.lm_head = Int8Linear(head)
        else:
            self.lm_head = linear(head)
        self.rope = RotaryEmbedding(D, c.rope_theta, c.max_position_embeddings)

    @classmethod
    def from_gguf(
        cls, f: GGUFFile, config: DecoderConfig | None = None, weights: str = "fp32"
    ) -> DecoderModel:
        config = config or DecoderConfig.from_gguf(f)
        state = llama_state_dict(
            f, config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads
        )
        return cls(config, state, weights=weights)

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
        x = F.embedding(ids, self.embed_tokens)  # (B, T, C)
        for block in self.layers:
            x = block(x, self.rope, start, cache)
        if cache is not None:
            cache.length = start + T
        if last_only:
            return self._head(self.norm(x[:, -1]))[:, None]  # (B, 1, V)
        return self.lm_head(self.norm(x))

    def decode_step(self, ids: torch.Tensor, pos: int, cache: KVCache) -> torch.Tensor:
        """One token per sequence, ids (B,) at position `pos` -> logits (B, V) in fp32.

        The hot loop of generation: 2-D activations, no reshapes of the residual stream, RoPE as
        one (D, D) matmul shared by all layers, quantized matmuls kept in bf16 in between."""
        x = F.embedding(ids, self.embed_tokens)  # (B, C)
        rot = self.rope.rotation(pos)  # (D, D)
        for block in self.layers:
            x = block.decode(x, pos, cache, rot)
        cache.length = pos + 1
        return self._head(self.norm(x))

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        """h (B, C) -> logits (B, V) fp32. With a quantized head, the `rerank_top` largest
        logits are recomputed exactly from the fp32 embedding (tied head): greedy picks and
        the top of the distribution are then as fp32's, at the quantized head's cost."""
        logits = self.lm_head.mm(h).float()  # (B, V)
        if self.weights == "fp32" or not self.config.tie_word_embeddings or not self.rerank_top:
            return logits
        top = logits.topk(self.rerank_top, dim=-1).indices  # (B, k)
        rows = self.embed_tokens[top]  # (B, k, C)
        exact = (rows @ h.float()[:, :, None])[..., 0]  # (B, k)
        return logits.scatter_(1, top, exact)

"""Loading the decoder's weights: checkpoint names, llama.cpp's GGUF names, a strict loader.

The checkpoint naming is transformers' `LlamaForCausalLM` state dict with two fusions, named as
transformers' Phi-3 names them (and as vLLM's `stacked_params_mapping` stacks Llama's): q/k/v
projections stacked into one `qkv_proj`, gate/up into one `gate_up_proj` (one matmul each; see
`decoder.layers`). `DecoderModel`'s parameter names are exactly these:

    model.embed_tokens.weight                         (V, C)
    model.layers.{i}.input_layernorm.weight           (C,)
    model.layers.{i}.self_attn.qkv_proj.weight        ((H + 2 KV) D, C)  q_proj, k_proj, v_proj
    model.layers.{i}.self_attn.o_proj.weight          (C, H D)
    model.layers.{i}.post_attention_layernorm.weight  (C,)
    model.layers.{i}.mlp.gate_up_proj.weight          (2 I, C)           gate_proj, up_proj
    model.layers.{i}.mlp.down_proj.weight             (C, I)
    model.norm.weight                                 (C,)
    lm_head.weight                                    (V, C)  only when not tied to the embedding

A GGUF names its tensors as llama.cpp does (`blk.{i}.attn_q.weight`, ...; `GGUF_NAMES` is
transformers' GGUF mapping). llama.cpp's converter (`convert_hf_to_gguf.py`,
`LlamaModel.permute`) reorders the rows of the Q and K projections so that its RoPE can rotate
adjacent pairs `(x[2i], x[2i+1])`; Hugging Face's `rotate_half` pairs `x[i]` with
`x[i + head_dim/2]`, so `unpermute_qk` undoes that reordering on load.

`load_weights` is strict like `nn.Module.load_state_dict(strict=True)`, but one error lists every
missing, unexpected and mis-shaped name at once (a wrong config shows up as dozens of shape
mismatches; seeing them all says which field is off). The file itself is read by `decoder.gguf`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping

import numpy as np
import torch
from torch import nn

from semsearch.decoder.config import DecoderConfig
from semsearch.decoder.gguf import GGUFFile
from semsearch.decoder.model import DecoderModel

logger = logging.getLogger(__name__)

# llama.cpp tensor names -> transformers' Llama names (transformers' GGUF mapping, `{i}` = layer).
GGUF_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
    "blk.{i}.attn_norm.weight": "model.layers.{i}.input_layernorm.weight",
    "blk.{i}.attn_q.weight": "model.layers.{i}.self_attn.q_proj.weight",
    "blk.{i}.attn_k.weight": "model.layers.{i}.self_attn.k_proj.weight",
    "blk.{i}.attn_v.weight": "model.layers.{i}.self_attn.v_proj.weight",
    "blk.{i}.attn_output.weight": "model.layers.{i}.self_attn.o_proj.weight",
    "blk.{i}.ffn_norm.weight": "model.layers.{i}.post_attention_layernorm.weight",
    "blk.{i}.ffn_gate.weight": "model.layers.{i}.mlp.gate_proj.weight",
    "blk.{i}.ffn_up.weight": "model.layers.{i}.mlp.up_proj.weight",
    "blk.{i}.ffn_down.weight": "model.layers.{i}.mlp.down_proj.weight",
}
# Checkpoint names that stack transformers' Llama tensors by rows, in this order.
FUSED = {
    "self_attn.qkv_proj.weight": (
        "self_attn.q_proj.weight",
        "self_attn.k_proj.weight",
        "self_attn.v_proj.weight",
    ),
    "mlp.gate_up_proj.weight": ("mlp.gate_proj.weight", "mlp.up_proj.weight"),
}
_LAYER = re.compile(r"^(model\.layers\.\d+\.)(.+)$")
_MAX_LISTED = 200  # per category; a totally wrong file would otherwise print thousands of lines

Shape = tuple[int, ...]


class WeightsError(ValueError):
    """The checkpoint does not fit the model: every problem is listed in the message."""


def permute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Hugging Face row order -> llama.cpp's, as `convert_hf_to_gguf.py` does it (for tests)."""
    rows, cols = w.shape
    w = w.reshape(n_heads, 2, rows // n_heads // 2, cols)  # (H, 2, head_dim/2, C)
    return w.swapaxes(1, 2).reshape(rows, cols)  # (H * head_dim, C)


def unpermute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's Q/K row order -> Hugging Face's (the inverse of `permute_qk`)."""
    rows, cols = w.shape
    w = w.reshape(n_heads, rows // n_heads // 2, 2, cols)  # (H, head_dim/2, 2, C)
    return w.swapaxes(1, 2).reshape(rows, cols)  # (H * head_dim, C)


def fuse_names(shapes: Mapping[str, Shape]) -> dict[str, tuple[str, ...]]:
    """transformers' Llama names (with their shapes) -> {checkpoint name: the names it stacks}.

    A layer's q/k/v (gate/up) become one `qkv_proj` (`gate_up_proj`) when all are present as
    matrices with the same number of columns; anything else keeps its own name (so that a
    loader reports it)."""
    fused: dict[str, tuple[str, ...]] = {}
    for name in shapes:
        match = _LAYER.match(name)
        for target, parts in FUSED.items():
            if match is None or match.group(2) != parts[0]:
                continue
            names = tuple(match.group(1) + p for p in parts)
            if all(len(shapes.get(n, ())) == 2 and shapes[n][1] == shapes[name][1] for n in names):
                fused[match.group(1) + target] = names
    taken = {n for names in fused.values() for n in names}
    return fused | {name: (name,) for name in shapes if name not in taken}


def fused_shape(parts: tuple[str, ...], shapes: Mapping[str, Shape]) -> Shape:
    if len(parts) == 1:
        return tuple(shapes[parts[0]])
    return (sum(shapes[p][0] for p in parts), shapes[parts[0]][1])  # rows stacked


def from_transformers(
    state: Mapping[str, torch.Tensor], config: DecoderConfig
) -> dict[str, torch.Tensor]:
    """transformers' `LlamaForCausalLM.state_dict()` -> checkpoint names (q/k/v and gate/up
    stacked; `lm_head.weight` dropped when `config` ties it to the embedding)."""
    parts_of = fuse_names({k: tuple(v.shape) for k, v in state.items()})
    out = {
        name: state[parts[0]] if len(parts) == 1 else torch.cat([state[p] for p in parts])
        for name, parts in parts_of.items()
    }
    if config.tie_word_embeddings:
        out.pop("lm_head.weight", None)
    return out


class GGUFCheckpoint(Mapping[str, np.ndarray]):
    """A llama GGUF's tensors under checkpoint names, each dequantized to fp32 when looked up
    (Q/K rows un-permuted, q/k/v and gate/up stacked), so a loader holds one tensor's
    temporaries at a time, not the model's. `shapes` are known without reading any weight."""

    def __init__(self, f: GGUFFile, config: DecoderConfig) -> None:
        self._stored = f.tensors()
        # transformers' name -> GGUF name; an unknown name stays as it is (and is reported)
        self._gguf_name = {_llama_name(g): g for g in self._stored}
        llama_shapes = {name: self._stored[g].shape for name, g in self._gguf_name.items()}
        self._parts = fuse_names(llama_shapes)
        self._heads = {
            "self_attn.q_proj.weight": config.num_attention_heads,
            "self_attn.k_proj.weight": config.num_key_value_heads,
        }
        self.shapes = {n: fused_shape(p, llama_shapes) for n, p in self._parts.items()}
        self.where = str(f.path)

    def _read(self, llama_name: str) -> np.ndarray:
        w = self._stored[self._gguf_name[llama_name]].to_numpy()
        match = _LAYER.match(llama_name)
        heads = self._heads.get(match.group(2)) if match else None
        return w if heads is None else unpermute_qk(w, heads)

    def __getitem__(self, name: str) -> np.ndarray:
        parts = self._parts[name]
        if len(parts) == 1:
            return self._read(parts[0])
        return np.concatenate([self._read(p) for p in parts])  # rows stacked

    def __iter__(self) -> Iterator[str]:
        return iter(self._parts)

    def __len__(self) -> int:
        return len(self._parts)


def _llama_name(gguf_name: str) -> str:
    match = re.match(r"^blk\.(\d+)\.(.+)$", gguf_name)
    if match is None:
        return GGUF_NAMES.get(gguf_name, gguf_name)
    llama = GGUF_NAMES.get(f"blk.{{i}}.{match.group(2)}")
    return gguf_name if llama is None else llama.format(i=match.group(1))


def _section(title: str, lines: list[str]) -> list[str]:
    if not lines:
        return []
    shown = [f"    {line}" for line in lines[:_MAX_LISTED]]
    if len(lines) > _MAX_LISTED:
        shown.append(f"    ... and {len(lines) - _MAX_LISTED} more")
    return [f"  {title} ({len(lines)}):", *shown]


def check_shapes(expected: Mapping[str, Shape], found: Mapping[str, Shape], where: str) -> None:
    """Raise `WeightsError` listing every missing, unexpected and mis-shaped name."""
    missing = [f"{n} {expected[n]}" for n in expected if n not in found]
    unexpected = [f"{n} {tuple(found[n])}" for n in sorted(found) if n not in expected]
    mis_shaped = [
        f"{n}: checkpoint {tuple(found[n])}, model {expected[n]}"
        for n in expected
        if n in found and tuple(found[n]) != expected[n]
    ]
    if not (missing or unexpected or mis_shaped):
        return
    counts = {"missing": missing, "unexpected": unexpected, "mis-shaped": mis_shaped}
    summary = ", ".join(f"{len(v)} {k}" for k, v in counts.items() if v)
    raise WeightsError(
        f"{where} does not match the model ({summary}):\n"
        + "\n".join(
            _section("missing from the checkpoint", missing)
            + _section("unexpected in the checkpoint", unexpected)
            + _section("mis-shaped", mis_shaped)
        )
        + "\nCheck that the config (DecoderConfig) belongs to these weights."
    )


@torch.no_grad()
def load_weights(
    model: DecoderModel,
    tensors: Mapping[str, torch.Tensor | np.ndarray],
    shapes: Mapping[str, Shape] | None = None,
    where: str = "checkpoint",
) -> None:
    """Give the fp32 `DecoderModel` the checkpoint's tensors, strictly: names and shapes are
    checked first (`check_shapes`), then each tensor becomes its parameter as fp32 (no copy of
    fp32 tensors, so this also fills a model built on the meta device), then ties are restored.

    `shapes`: the tensors' shapes when known without reading them (`GGUFCheckpoint.shapes`);
    by default taken from the tensors. Quantize after loading (`decoder.quantized`)."""
    params = dict(model.named_parameters())
    expected = {name: tuple(p.shape) for name, p in params.items()}
    if shapes is None:
        shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    check_shapes(expected, shapes, where)
    for name, old in params.items():
        owner, _, attr = name.rpartition(".")
        weight = torch.as_tensor(tensors[name]).float().contiguous()
        setattr(model.get_submodule(owner), attr, nn.Parameter(weight, old.requires_grad))
    model.tie_weights()
    logger.debug("loaded %d tensors from %s", len(expected), where)


def load_gguf_weights(model: DecoderModel, f: GGUFFile) -> None:
    """`load_weights` from a llama GGUF, one tensor dequantized at a time."""
    checkpoint = GGUFCheckpoint(f, model.config)
    load_weights(model, checkpoint, checkpoint.shapes, checkpoint.where)

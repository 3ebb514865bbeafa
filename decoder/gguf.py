"""Reading a GGUF file: metadata, tensors, and dequantization to fp32.

The only module that opens `.gguf` files. Parsing is done by the `gguf` package's `GGUFReader`
(llama.cpp's gguf-py, memory-mapped); the block formats below follow llama.cpp's
`ggml-quants.c` (`dequantize_row_q4_1`, `dequantize_row_q8_0`) and are written out here in numpy so
that what the model computes with is visible and testable.

llama.cpp's converter (`convert_hf_to_gguf.py`, `LlamaModel.permute`) reorders the rows of the Q and
K projections so that its RoPE can rotate adjacent pairs `(x[2i], x[2i+1])`; Hugging Face's
`rotate_half` pairs `x[i]` with `x[i + head_dim/2]`. `unpermute_qk` undoes that reordering.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader

logger = logging.getLogger(__name__)

QK = 32  # elements per quantization block for Q4_1 and Q8_0 (ggml's QK4_1, QK8_0)
SUPPORTED = ("F32", "F16", "Q4_1", "Q8_0")


@dataclass(frozen=True)
class GGUFTensor:
    """One tensor as stored: its name, ggml type, shape in row-major (PyTorch) order, raw data."""

    name: str
    qtype: str
    shape: tuple[int, ...]
    data: np.ndarray  # memory-mapped; quantized types are uint8 (rows, bytes per row)

    def to_numpy(self) -> np.ndarray:
        """Dequantize to a float32 array of `shape`."""
        return dequantize(self.data, self.qtype, self.shape)


def dequantize_q4_1(raw: np.ndarray) -> np.ndarray:
    """Q4_1: per 32 values, fp16 scale d, fp16 min m, 16 bytes of nibbles; x = d * q + m.

    Low nibbles hold elements 0..15 of the block, high nibbles elements 16..31 (ggml's layout).
    """
    blocks = raw.reshape(-1, 20)  # (n_blocks, 2 + 2 + 16)
    d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)  # (n_blocks, 1)
    m = blocks[:, 2:4].copy().view(np.float16).astype(np.float32)  # (n_blocks, 1)
    qs = blocks[:, 4:]  # (n_blocks, 16)
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32)  # (n_blocks, 32)
    q *= d  # in place: one fp32 temporary per tensor, not three
    q += m
    return q.reshape(-1)


def dequantize_q8_0(raw: np.ndarray) -> np.ndarray:
    """Q8_0: per 32 values, fp16 scale d and 32 int8 quants; x = d * q."""
    blocks = raw.reshape(-1, 34)  # (n_blocks, 2 + 32)
    d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)  # (n_blocks, 1)
    q = blocks[:, 2:].copy().view(np.int8).astype(np.float32)  # (n_blocks, 32)
    q *= d
    return q.reshape(-1)


def dequantize(data: np.ndarray, qtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Raw tensor data of ggml type `qtype` -> float32 array of `shape` (row-major)."""
    if qtype == "F32":
        out = np.array(data, dtype=np.float32)  # a copy: the memory map is read-only
    elif qtype == "F16":
        out = np.asarray(data).view(np.float16).astype(np.float32)
    elif qtype == "Q4_1":
        out = dequantize_q4_1(np.ascontiguousarray(data).reshape(-1))
    elif qtype == "Q8_0":
        out = dequantize_q8_0(np.ascontiguousarray(data).reshape(-1))
    else:
        raise ValueError(
            f"tensor type {qtype} is not supported; supported types: {', '.join(SUPPORTED)}"
        )
    return out.reshape(shape)


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


class GGUFFile:
    """A GGUF file's metadata and tensors, opened lazily (memory-mapped) by `gguf.GGUFReader`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {self.path}")
        self._reader: GGUFReader | None = GGUFReader(self.path, "r")
        self._sha256: str | None = None

    @property
    def _open_reader(self) -> GGUFReader:
        if self._reader is None:
            raise RuntimeError(f"{self.path} was closed; open a new GGUFFile to read it again")
        return self._reader

    def close(self) -> None:
        """Drop the memory map and parsed fields (~150 MB of RSS); `sha256()` still works."""
        self._reader = None

    def metadata(self, key: str, default: Any = None) -> Any:
        """A metadata value (scalar, string or list), or `default` when the key is absent."""
        field = self._open_reader.fields.get(key)
        if field is None:
            return default
        return field.contents()

    def keys(self) -> list[str]:
        return list(self._open_reader.fields)

    def tensors(self) -> dict[str, GGUFTensor]:
        """Every tensor by name, shapes in PyTorch order (GGUF stores ggml's reversed `ne`)."""
        out: dict[str, GGUFTensor] = {}
        for t in self._open_reader.tensors:
            qtype = GGMLQuantizationType(t.tensor_type).name
            shape = tuple(int(n) for n in reversed(t.shape.tolist()))
            out[t.name] = GGUFTensor(t.name, qtype, shape, t.data)
        return out

    def sha256(self) -> str:
        """SHA-256 of the whole file, computed once."""
        if self._sha256 is None:
            h = hashlib.sha256()
            with open(self.path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            self._sha256 = h.hexdigest()
        return self._sha256

    def file_type(self) -> str:
        """The dominant quantization of the 2-D weights, e.g. "Q4_1"."""
        counts: dict[str, int] = {}
        for t in self.tensors().values():
            if len(t.shape) == 2:
                counts[t.qtype] = counts.get(t.qtype, 0) + 1
        return max(counts, key=lambda k: counts[k]) if counts else "unknown"


# llama.cpp tensor names -> Hugging Face Llama names (transformers' GGUF mapping, `{i}` = layer).
LLAMA_NAMES = {
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


class LlamaStateDict(Mapping[str, np.ndarray]):
    """A llama GGUF's tensors under Hugging Face names, each dequantized to fp32 when looked up
    (Q/K rows un-permuted), so a loader holds one tensor's temporaries at a time, not the model's.
    """

    def __init__(
        self,
        f: GGUFFile,
        n_layers: int,
        n_heads: int,
        n_kv_heads: int,
        undo_permutation: bool = True,
    ) -> None:
        stored = f.tensors()
        wanted: dict[str, str] = {}
        for gguf_name, hf_name in LLAMA_NAMES.items():
            if "{i}" in gguf_name:
                for i in range(n_layers):
                    wanted[hf_name.format(i=i)] = gguf_name.format(i=i)
            else:
                wanted[hf_name] = gguf_name
        optional = {"output.weight"}  # absent when the output head is tied to the embedding
        missing = sorted(set(wanted.values()) - set(stored) - optional)
        unexpected = sorted(set(stored) - set(wanted.values()))
        if missing or unexpected:
            raise ValueError(
                f"{f.path} does not hold a {n_layers}-layer llama model: "
                f"missing {missing[:10]}{' ...' if len(missing) > 10 else ''}; "
                f"unexpected {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}"
            )
        self._stored = stored
        self._names = {hf: g for hf, g in wanted.items() if g in stored}
        self._heads = {"attn_q.weight": n_heads, "attn_k.weight": n_kv_heads}
        self._undo = undo_permutation

    def __getitem__(self, hf_name: str) -> np.ndarray:
        gguf_name = self._names[hf_name]
        w = self._stored[gguf_name].to_numpy()
        heads = self._heads.get(gguf_name.split(".", 2)[-1])
        if self._undo and heads is not None:
            w = unpermute_qk(w, heads)
        return w

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def llama_state_dict(
    f: GGUFFile, n_layers: int, n_heads: int, n_kv_heads: int, undo_permutation: bool = True
) -> LlamaStateDict:
    """Every llama tensor as fp32 under its Hugging Face name (lazily), Q/K rows un-permuted.

    Raises one ValueError listing every expected tensor that is missing and every unexpected one.
    """
    return LlamaStateDict(f, n_layers, n_heads, n_kv_heads, undo_permutation)

"""Reading a GGUF file: metadata, tensors, and dequantization to fp32.

The only module that opens `.gguf` files. Parsing is done by the `gguf` package's `GGUFReader`
(llama.cpp's gguf-py, memory-mapped); the block formats below follow llama.cpp's
`ggml-quants.c` (`dequantize_row_q4_1`, `dequantize_row_q8_0`) and are written out here in numpy so
that what the model computes with is visible and testable. Tensor names and the Q/K row order are
`decoder.weights`' business.
"""

from __future__ import annotations

import hashlib
import logging
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

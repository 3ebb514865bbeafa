"""Export our BERT encoder to ONNX: padded inputs in, one L2-normalized sentence vector out.

The graph is `SentenceEmbeddingGraph`: `encoder.model.BertModel.forward_padded` (the padded layout,
whose shapes do not depend on the mask, so it traces; the packed layout that serving runs does not)
followed by `encoder.pooling`'s mean pooling and L2 normalization. Inputs and outputs are named in
`encoder.onnx.artifacts`: `input_ids`, `attention_mask`, `token_type_ids` (int64, (batch, sequence),
both axes dynamic) in; `sentence_embedding` (float32, (batch, hidden)) and `mean_pooled`, the same
before normalization, out.

Also the fp32 variant with onnxruntime's transformer graph optimizations (`optimize_fp32`:
attention, LayerNorm, GELU fusion, as `onnxruntime.transformers.optimizer` does for BERT).

Export needs torch and onnx (the `export` extra, `make artifacts`); serving does not import this.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

try:
    import onnx
    import torch
    from torch import Tensor, nn
except ImportError as e:  # the export toolchain is an extra; serving never imports this file
    raise ImportError(
        f"the ONNX export needs the export toolchain: pip install 'semsearch[export]' "
        f"(missing: {e.name})"
    ) from e

from semsearch.encoder.model import BertModel
from semsearch.encoder.model_files import file_sha256, read_model_files
from semsearch.encoder.onnx.artifacts import (
    INPUT_NAMES,
    MANIFEST_FILE,
    MODEL_CONFIG_DIR,
    OUTPUT_NAME,
    POOLED_NAME,
)
from semsearch.encoder.pooling import l2_normalize, mean_pool
from semsearch.encoder.weights import load_weights

logger = logging.getLogger(__name__)

OPSET = 17
# The files whose code makes the graph: an artifact built from other code is stale.
SOURCE_FILES = (
    "config.py",
    "layers.py",
    "model.py",
    "pooling.py",
    "onnx/artifacts.py",
    "onnx/export.py",
)


def source_digest() -> str:
    """sha256 over `SOURCE_FILES` of the encoder package."""
    root = Path(__file__).resolve().parent.parent  # the encoder package
    h = hashlib.sha256()
    for name in SOURCE_FILES:
        h.update(name.encode())
        h.update((root / name).read_bytes())
    return h.hexdigest()


class SentenceEmbeddingGraph(nn.Module):
    """Padded (B, T) ids -> mean-pooled, L2-normalized (B, C) and the pooled vectors before
    normalization: the module the export traces."""

    def __init__(self, bert: BertModel) -> None:
        super().__init__()
        self.bert = bert

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor
    ) -> tuple[Tensor, Tensor]:
        hidden = self.bert.forward_padded(input_ids, attention_mask, token_type_ids)  # (B, T, C)
        pooled = mean_pool(hidden, attention_mask)  # (B, C), padding positions masked out
        return l2_normalize(pooled), pooled


def build_graph_module(model_dir: str | Path | None = None) -> SentenceEmbeddingGraph:
    """Our `BertModel` with the checkpoint's weights (Q, K, V unfused), wrapped for export."""
    files = read_model_files(model_dir)
    bert = BertModel(files.config)
    load_weights(bert, files.weights_path)
    return SentenceEmbeddingGraph(bert).eval().requires_grad_(False)


def export_fp32(out_path: Path, model_dir: str | Path | None = None) -> Path:
    """Export the checkpoint in `model_dir` (None: the default model) to `out_path`."""
    return export_module(build_graph_module(model_dir), out_path)


def export_module(module: SentenceEmbeddingGraph, out_path: Path) -> Path:
    """Trace `module` to ONNX (TorchScript exporter: the patterns ORT's fusions expect)."""
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])  # one padded row, one full
    ids = mask * torch.arange(1, 6)  # any ids in the vocabulary: tracing records no values
    types = torch.zeros_like(ids)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".tmp.onnx")
    axes = {0: "batch", 1: "sequence"}
    torch.onnx.export(
        module,
        (ids, mask, types),
        str(tmp),
        input_names=list(INPUT_NAMES),
        output_names=[OUTPUT_NAME, POOLED_NAME],
        dynamic_axes={
            **{n: axes for n in INPUT_NAMES},
            OUTPUT_NAME: {0: "batch"},
            POOLED_NAME: {0: "batch"},
        },
        opset_version=OPSET,
        do_constant_folding=True,
        dynamo=False,
    )
    model = onnx.load(str(tmp))
    onnx.checker.check_model(model, full_check=True)
    tmp.replace(out_path)
    logger.info("exported %s (%d nodes)", out_path, len(model.graph.node))
    return out_path


def optimize_fp32(src: Path, out_path: Path, num_heads: int, hidden_size: int) -> Path:
    """onnxruntime's BERT optimizer: Attention, LayerNormalization, (Bias)Gelu, SkipLayerNorm."""
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(
        str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=1
    )
    logger.info("fused operators: %s", optimized.get_fused_operator_statistics())
    tmp = out_path.with_suffix(".tmp.onnx")
    optimized.save_model_to_file(str(tmp))
    onnx.checker.check_model(str(tmp))
    tmp.replace(out_path)
    return out_path


def write_manifest(out_dir: Path, model_dir: str | Path | None) -> dict[str, Any]:
    """What the artifacts were built from (the loader checks `dim` and `vocab_sha256`), and the
    model's config and tokenizer files beside them."""
    files = read_model_files(model_dir)
    manifest = {
        "model_dir": str(files.model_dir),
        "weights_sha256": file_sha256(files.weights_path),
        "vocab_sha256": file_sha256(files.vocab_path),
        "source_sha256": source_digest(),
        "dim": files.dim,
        "max_length": files.max_seq_length,
        "opset": OPSET,
    }
    copy_model_config(files.model_dir, out_dir / MODEL_CONFIG_DIR)
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def copy_model_config(model_dir: Path, dest: Path) -> None:
    """Copy the model directory's JSON and text files (config, vocab, tokenizer, pooling) into
    `dest`, leaving out the weights: serving the artifacts reads these, never the checkpoint."""
    if dest.exists():
        shutil.rmtree(dest)
    for path in sorted(model_dir.rglob("*")):
        if path.is_file() and path.suffix in (".json", ".txt"):
            target = dest / path.relative_to(model_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)


__all__ = [
    "OPSET",
    "SentenceEmbeddingGraph",
    "build_graph_module",
    "copy_model_config",
    "export_fp32",
    "export_module",
    "optimize_fp32",
    "source_digest",
    "write_manifest",
]

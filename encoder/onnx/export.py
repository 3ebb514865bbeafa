"""Export our BERT encoder to ONNX: padded inputs in, one L2-normalized sentence vector out.

The graph is `SentenceEmbeddingGraph`: the same parameters as `encoder.model.BertModel`, run on the
plain padded layout (an additive attention mask, as transformers' `modeling_bert.py` does) because
the packed path's data-dependent shapes do not trace; mean pooling and L2 normalization are inside
the graph. Inputs `input_ids`, `attention_mask`, `token_type_ids` (int64, (batch, sequence), both
axes dynamic); output `sentence_embedding` (float32, (batch, hidden)), and `mean_pooled`, the same
before normalization.

Also the fp32 variant with onnxruntime's transformer graph optimizations (`optimize_fp32`:
attention, LayerNorm, GELU fusion, as `onnxruntime.transformers.optimizer` does for BERT).

Export needs torch and onnx (the `export` extra, `make artifacts`); serving does not.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path
from typing import Any

from semsearch.encoder.model_files import file_sha256

logger = logging.getLogger(__name__)

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "sentence_embedding"
POOLED_NAME = "mean_pooled"  # the same vectors before normalization, for encode(normalize=False)
OPSET = 17
EXPORT_HINT = "the ONNX export needs the export toolchain: pip install 'semsearch[export]'"

# Artifact file names inside the artifact directory (default: models/onnx at the repo root).
FP32_FILE = "model.onnx"
FP32_OPTIMIZED_FILE = "model_optimized.onnx"
INT8_FILE = "model_int8.onnx"
MANIFEST_FILE = "manifest.json"


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError as e:
        raise ImportError(f"{EXPORT_HINT} (missing: {module})") from e


def source_digest() -> str:
    """sha256 over the encoder's math files: an artifact built from other code is stale."""
    root = Path(__file__).resolve().parent.parent  # the encoder package
    h = hashlib.sha256()
    for name in ("config.py", "layers.py", "model.py", "pooling.py", "onnx/export.py"):
        h.update(name.encode())
        h.update((root / name).read_bytes())
    return h.hexdigest()


def build_graph_module(model_dir: str | Path | None = None) -> Any:
    """Our `BertModel` with the checkpoint's weights, wrapped for export (torch imported here)."""
    torch = _require("torch")
    from torch import Tensor, nn

    from semsearch.encoder.model import BertModel
    from semsearch.encoder.model_files import read_model_files
    from semsearch.encoder.pooling import l2_normalize, mean_pool
    from semsearch.encoder.weights import load_weights

    class SentenceEmbeddingGraph(nn.Module):
        """Padded (B, T) ids -> mean-pooled, L2-normalized (B, C); the export-friendly forward."""

        def __init__(self, bert: BertModel) -> None:
            super().__init__()
            self.bert = bert
            config = bert.config
            self.n_head = config.num_attention_heads
            self.head_dim = config.head_dim
            positions = torch.arange(config.max_position_embeddings).unsqueeze(0)
            self.register_buffer("position_ids", positions, persistent=False)  # (1, P)

        def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor):
            B, T = input_ids.shape
            nh, hd = self.n_head, self.head_dim
            emb = self.bert.embeddings
            x = emb.word_embeddings(input_ids) + emb.token_type_embeddings(token_type_ids)
            x = emb.LayerNorm(x + emb.position_embeddings(self.position_ids[:, :T]))  # (B, T, C)
            C = x.shape[-1]
            mask = attention_mask[:, None, None, :].to(x.dtype)  # (B, 1, 1, T)
            bias = (1.0 - mask) * torch.finfo(x.dtype).min  # (B, 1, 1, T)
            for block in self.bert.encoder.layer:
                a = block.attention.self
                q = a.query(x).view(B, T, nh, hd).permute(0, 2, 1, 3)  # (B, nh, T, hd)
                k = a.key(x).view(B, T, nh, hd).permute(0, 2, 1, 3)  # (B, nh, T, hd)
                v = a.value(x).view(B, T, nh, hd).permute(0, 2, 1, 3)  # (B, nh, T, hd)
                att = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(hd)  # (B, nh, T, T)
                att = torch.softmax(att + bias, dim=-1)
                y = torch.matmul(att, v).permute(0, 2, 1, 3).reshape(B, T, C)  # (B, T, C)
                x = block.attention.output(y, x)
                x = block.output(block.intermediate(x), x)  # (B, T, C)
            pooled = mean_pool(x, attention_mask)  # (B, C)
            return l2_normalize(pooled), pooled

    files = read_model_files(model_dir)
    bert = BertModel(files.config)
    load_weights(bert, files.weights_path)
    return SentenceEmbeddingGraph(bert).eval().requires_grad_(False)


def export_fp32(out_path: Path, model_dir: str | Path | None = None) -> Path:
    """Trace the graph module to ONNX (TorchScript exporter: the patterns ORT's fusions expect)."""
    torch = _require("torch")
    onnx = _require("onnx")
    module = build_graph_module(model_dir)
    ids = torch.tensor([[101, 7592, 2088, 102, 0], [101, 2023, 2003, 1037, 102]])
    mask = (ids != 0).long()
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
    onnx = _require("onnx")
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
    """What the artifacts were built from: checked by `make` (rebuild) and by the loader."""
    from semsearch.encoder.model_files import read_model_files

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
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


__all__ = [
    "FP32_FILE",
    "FP32_OPTIMIZED_FILE",
    "INPUT_NAMES",
    "INT8_FILE",
    "MANIFEST_FILE",
    "OUTPUT_NAME",
    "POOLED_NAME",
    "build_graph_module",
    "export_fp32",
    "optimize_fp32",
    "source_digest",
    "write_manifest",
]

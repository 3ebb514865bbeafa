"""semsearch's sentence encoder: a WordPiece tokenizer and a from-scratch BERT.

Importing this package is cheap and never imports torch: `load_embedder(backend="torch")` imports
it when called, and `WordPieceTokenizer` is resolved on first access.

    from semsearch.encoder import load_embedder, WordPieceTokenizer
    emb = load_embedder()                          # the bundled all-MiniLM-L6-v2, PyTorch backend
    vecs = emb.encode(["text", ...], batch_size=32)  # (n, dim) float32, L2-normalized, input order
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from semsearch.encoder.embedder import TorchEmbedder
    from semsearch.encoder.onnx.embedder import OnnxEmbedder, OnnxOptions
    from semsearch.encoder.onnx.openvino_embedder import OpenVinoEmbedder
    from semsearch.encoder.wordpiece import WordPieceTokenizer

# Every backend the public contract names, and the ones this version implements.
BACKENDS = ("torch", "onnx", "onnx-int8", "openvino", "openvino-int8", "auto")

__all__ = ["BACKENDS", "WordPieceTokenizer", "load_embedder"]


def load_embedder(
    model_dir: str | Path | None = None,
    backend: str = "torch",
    threads: int | None = None,
    onnx_options: OnnxOptions | None = None,
    prefer: str | None = None,
) -> TorchEmbedder | OnnxEmbedder | OpenVinoEmbedder:
    """Load a sentence-transformers BERT directory (None: the bundled default model; for the
    ONNX backends, the copy of its config and tokenizer that the artifacts carry).

    `threads` sets torch's intra-op thread count (process-wide), or ONNX Runtime's / OpenVINO's
    threads (None: all cores); None leaves torch's default. The ONNX backends serve the artifacts
    of `semsearch export` (`make artifacts`), located and run as `onnx_options` says: `onnx` and
    `onnx-int8` on onnxruntime, `openvino` (the plain fp32 export, f32 or bf16) and
    `openvino-int8` (NNCF's static int8) on OpenVINO. `auto` serves the fastest of those that
    passed the accuracy gates when the export measured them (`encoder.onnx.auto`), `prefer` first.
    """
    if backend not in BACKENDS:
        raise ValueError(
            f"unknown encoder backend {backend!r}; valid backends: {', '.join(BACKENDS)}"
        )
    if backend in ("onnx", "onnx-int8"):
        from semsearch.encoder.onnx.embedder import OnnxEmbedder, serving_model_files

        files = serving_model_files(model_dir, onnx_options)
        return OnnxEmbedder(files, backend, threads, onnx_options)
    if backend in ("openvino", "openvino-int8"):
        from semsearch.encoder.onnx.embedder import serving_model_files
        from semsearch.encoder.onnx.openvino_embedder import OpenVinoEmbedder

        files = serving_model_files(model_dir, onnx_options)
        return OpenVinoEmbedder(files, threads, onnx_options, backend)
    if backend == "auto":
        from semsearch.encoder.onnx.auto import load_auto

        return load_auto(model_dir, threads, onnx_options, prefer)
    try:
        import torch  # noqa: F401
    except ImportError as e:
        raise ImportError(
            "the 'torch' encoder backend needs PyTorch: pip install 'semsearch[torch]'"
        ) from e
    from semsearch.encoder.embedder import TorchEmbedder
    from semsearch.encoder.model_files import read_model_files

    return TorchEmbedder(read_model_files(model_dir), threads=threads)


def __getattr__(name: str) -> Any:
    if name == "WordPieceTokenizer":
        from semsearch.encoder.wordpiece import WordPieceTokenizer

        return WordPieceTokenizer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

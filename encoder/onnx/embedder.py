"""The ONNX Runtime embedder: the same `encode()` contract as `TorchEmbedder`, without torch.

Serving needs onnxruntime, numpy and our WordPiece tokenizer only. The artifacts come from
`semsearch export` (`make artifacts`): `model_optimized.onnx` (fp32, fused) for backend "onnx",
`model_int8.onnx` for "onnx-int8", each with its accuracy report, and `manifest.json` naming the
model they were built from. An int8 artifact is served only when its report exists, describes this
very file and meets the thresholds (`encoder.onnx.accuracy.check_report`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from semsearch import paths
from semsearch.encoder.base import SentenceEmbedder, check_threads
from semsearch.encoder.model_files import ModelFiles, file_sha256, read_model_files
from semsearch.encoder.onnx.accuracy import Thresholds, check_report
from semsearch.encoder.onnx.artifacts import (
    FP32_OPTIMIZED_FILE,
    INT8_FILE,
    MANIFEST_FILE,
    MODEL_CONFIG_DIR,
    OUTPUT_NAME,
    POOLED_NAME,
)
from semsearch.encoder.wordpiece import WordPieceTokenizer

logger = logging.getLogger(__name__)

ORT_HINT = "the ONNX backends need onnxruntime: pip install onnxruntime"
ARTIFACT_FILES = {"onnx": FP32_OPTIMIZED_FILE, "onnx-int8": INT8_FILE}


def default_artifact_dir() -> Path:
    """`onnx/` in the models directory (`semsearch.paths`), where `semsearch export` writes."""
    return paths.onnx_dir()


@dataclass(frozen=True)
class OnnxOptions:
    """Where the artifacts are and how ONNX Runtime runs them (from `service.settings`)."""

    artifact_dir: Path | None = None  # None: default_artifact_dir()
    sequential: bool = True  # ORT_SEQUENTIAL execution (parallel only helps branchy graphs)
    memory_arena: bool = True  # ORT's CPU memory arena: buffers reused across batches
    spinning: bool = True  # intra-op workers spin between parallel sections (ORT's default)
    openvino_precision: str = "f32"  # backend openvino: "f32" or "bf16"
    thresholds: Thresholds = field(default_factory=Thresholds)


def serving_model_files(model_dir: str | Path | None, options: OnnxOptions | None) -> ModelFiles:
    """The model files to serve the artifacts with: `model_dir` when given, else the config and
    tokenizer copy in the artifact directory (no checkpoint, so no model package or torch), else
    the bundled default model (artifacts exported before they carried the copy)."""
    if model_dir is not None:
        return read_model_files(model_dir)
    artifact_dir = Path((options or OnnxOptions()).artifact_dir or default_artifact_dir())
    carried = artifact_dir / MODEL_CONFIG_DIR
    if carried.is_dir():
        return read_model_files(carried, weights=False)
    if not artifact_dir.is_dir():
        raise FileNotFoundError(missing_artifacts(artifact_dir))
    return read_model_files()


def read_manifest(artifact_dir: Path, files: ModelFiles) -> dict[str, Any]:
    """The artifacts' manifest, checked against the model files they will be served with."""
    path = artifact_dir / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(missing_artifacts(path))
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("dim") != files.dim:
        raise ValueError(
            f"{path}: artifacts of dimension {manifest.get('dim')}, but {files.model_dir} "
            f"has hidden_size {files.dim}; re-export for this model"
        )
    return manifest


def exported_tokenizer(
    files: ModelFiles, manifest: dict[str, Any], artifact_dir: Path
) -> WordPieceTokenizer:
    """The model's tokenizer, refused unless its vocab is the one the graph was exported with."""
    tokenizer = WordPieceTokenizer.from_dir(files.model_dir)
    if tokenizer.vocab_sha256 != manifest["vocab_sha256"]:
        raise ValueError(
            f"{artifact_dir} was exported with another vocab than {files.vocab_path}; "
            "re-export them (`semsearch export`) or point model_dir at the original model"
        )
    return tokenizer


def graph_feeds(
    input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray | None
) -> dict[str, np.ndarray]:
    """The exported graph's int64 (B, T) inputs, without the columns that are padding in every
    row (they change nothing; dropping them is less work)."""
    real_cols = np.flatnonzero(attention_mask.astype(bool).any(axis=0))
    T = int(real_cols[-1]) + 1
    if token_type_ids is None:
        token_type_ids = np.zeros_like(input_ids)
    return {
        "input_ids": np.ascontiguousarray(input_ids[:, :T], dtype=np.int64),
        "attention_mask": np.ascontiguousarray(attention_mask[:, :T], dtype=np.int64),
        "token_type_ids": np.ascontiguousarray(token_type_ids[:, :T], dtype=np.int64),
    }


@dataclass(frozen=True)
class ServedArtifact:
    """An artifact checked for serving, whatever the runtime: its file and hash, the manifest, its
    accuracy report (int8 only), and the tokenizer it was exported with."""

    path: Path
    sha256: str
    manifest: dict[str, Any]
    report: dict[str, Any] | None
    tokenizer: WordPieceTokenizer


def open_artifact(
    files: ModelFiles,
    options: OnnxOptions,
    file_name: str,
    artifact: Path | None = None,
    check_accuracy: bool = False,
) -> ServedArtifact:
    """`file_name` in the artifact dir (or `artifact`), refused when missing, exported for another
    model or vocab, or (with `check_accuracy`) without a report that meets the thresholds."""
    artifact_dir = Path(options.artifact_dir or default_artifact_dir())
    path = Path(artifact) if artifact else artifact_dir / file_name
    if not path.is_file():
        raise FileNotFoundError(missing_artifacts(path))
    manifest = read_manifest(artifact_dir, files)
    sha256 = file_sha256(path)
    report = check_report(path, options.thresholds, sha256) if check_accuracy else None
    tokenizer = exported_tokenizer(files, manifest, artifact_dir)
    return ServedArtifact(path, sha256, manifest, report, tokenizer)


def artifact_fingerprint(
    embedder: SentenceEmbedder, served: ServedArtifact, quantization: str | None, **extra: Any
) -> dict[str, Any]:
    """What identifies an artifact embedder's vectors (two equal -> same vectors): the model's
    weights and vocab, the output's shape and pooling, the backend, its quantization and the
    artifact's own hash, plus what else the runtime changes (`extra`, e.g. its precision)."""
    return {
        "weights_sha256": served.manifest["weights_sha256"],
        "vocab_sha256": served.tokenizer.vocab_sha256,
        "dim": embedder.dim,
        "max_length": embedder.max_length,
        "pooling": embedder.files.pooling,
        "normalize": True,
        "backend": embedder.backend,
        "quantization": quantization,
        **extra,
        "artifact_sha256": served.sha256,
    }


def missing_artifacts(path: Path) -> str:
    """What to do when the artifacts are not where the settings point."""
    return (
        f"ONNX artifacts not found: {path}. `semsearch export --quantize int8 --out DIR` writes "
        f"them (`make artifacts` for a checkout's models/); point {paths.MODELS_DIR_ENV} at the "
        "folder holding onnx/, or SEMSEARCH_ONNX_DIR at onnx/ itself"
    )


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class OnnxEmbedder(SentenceEmbedder):
    """Sentence vectors from an exported ONNX graph (pooling and normalization inside it)."""

    def __init__(
        self,
        files: ModelFiles,
        backend: str = "onnx-int8",
        threads: int | None = None,
        options: OnnxOptions | None = None,
        artifact: Path | None = None,
        check_accuracy: bool = True,
    ) -> None:
        """`artifact` overrides the backend's file in the artifact dir; `check_accuracy=False` skips
        the int8 report check (only for `semsearch export`, which is about to write it)."""
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ImportError(ORT_HINT) from e
        if backend not in ARTIFACT_FILES:
            raise ValueError(f"backend must be one of {sorted(ARTIFACT_FILES)}, got {backend!r}")
        check_threads(threads)
        started = time.perf_counter()
        options = options or OnnxOptions()
        self.backend = backend
        self.files = files
        self.options = options
        served = open_artifact(
            files,
            options,
            ARTIFACT_FILES[backend],
            artifact,
            check_accuracy=check_accuracy and backend == "onnx-int8",
        )
        self.served = served
        self.artifact, self.artifact_sha256 = served.path, served.sha256
        self.manifest, self.report = served.manifest, served.report
        self.tokenizer = served.tokenizer
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or _cpu_count()
        so.inter_op_num_threads = 1
        so.execution_mode = (
            ort.ExecutionMode.ORT_SEQUENTIAL
            if options.sequential
            else ort.ExecutionMode.ORT_PARALLEL
        )
        so.enable_cpu_mem_arena = options.memory_arena
        spin = "1" if options.spinning else "0"
        so.add_session_config_entry("session.intra_op.allow_spinning", spin)
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(self.artifact), sess_options=so, providers=["CPUExecutionProvider"]
        )
        self.threads = so.intra_op_num_threads
        logger.info(
            "loaded %s encoder %s in %.2fs (%d threads)",
            backend,
            self.artifact,
            time.perf_counter() - started,
            self.threads,
        )

    @property
    def quantization(self) -> dict[str, Any] | None:
        return None if self.report is None else self.report.get("quantization")

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this encoder's vectors: two fingerprints equal -> same vectors."""
        mode = (self.quantization or {}).get("mode", "dynamic")
        quantization = f"int8-{mode}" if self.backend == "onnx-int8" else None
        return artifact_fingerprint(self, self.served, quantization)

    def _embed(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        token_type_ids: np.ndarray | None,
        normalize: bool,
    ) -> np.ndarray:
        output = OUTPUT_NAME if normalize else POOLED_NAME
        feeds = graph_feeds(input_ids, attention_mask, token_type_ids)
        (vectors,) = self.session.run([output], feeds)
        return np.asarray(vectors, dtype=np.float32)

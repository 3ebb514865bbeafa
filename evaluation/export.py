"""`semsearch export`: build the ONNX artifacts and the accuracy report beside each one.

Runs in the export toolchain (`.venv-export`, the `export` extra: torch, onnx, optimum-onnx, nncf,
openvino): export our encoder (fp32), fuse it with onnxruntime's BERT optimizer, quantize it to
int8 for onnxruntime (`encoder.onnx.quantize`) and for OpenVINO (`encoder.onnx.nncf_quantize`),
measure every artifact against our torch fp32 encoder on real text (`evaluation.text_sets`) and
write `<artifact>.accuracy.json`; then time the artifacts that pass on this machine and write
which one backend `auto` serves (`evaluation.backend_choice`). `--search`
(`evaluation.int8_search`) measures the quantization variants of docs/benchmarks.md's search
tables instead of writing artifacts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from semsearch.encoder.model_files import ModelFiles
from semsearch.encoder.onnx.accuracy import (
    Thresholds,
    below_thresholds,
    build_report,
    cosine_stats,
    top_k_agreement,
    write_report,
)
from semsearch.encoder.onnx.artifacts import (
    FP32_FILE,
    FP32_OPTIMIZED_FILE,
    INT8_FILE,
    OPENVINO_INT8_FILE,
)
from semsearch.encoder.onnx.export import export_fp32, optimize_fp32, write_manifest
from semsearch.evaluation.text_sets import calibration_feeds, probe_set, retrieval_set

log = logging.getLogger(__name__)

TOP_K = 10
REFERENCE = "torch fp32 (encoder.model.BertModel), same tokenizer"


class Measure:
    """The reference vectors (torch fp32, computed once) and the figures of one candidate."""

    def __init__(self, model_dir: str | Path | None, threads: int | None) -> None:
        from semsearch.encoder import load_embedder

        self.probe = probe_set()
        self.docs, self.queries = retrieval_set()
        reference = load_embedder(model_dir, backend="torch", threads=threads)
        lengths = [len(e) for e in reference.tokenizer.encode_batch(self.probe)]
        self.probe_info = {
            "texts": len(self.probe),
            "source": "evaluation.corpus real_texts(1950) + long_texts(50)",
            "tokens_min": int(min(lengths)),
            "tokens_max": int(max(lengths)),
            "truncated_at": reference.max_length,
        }
        started = time.perf_counter()
        self.ref_probe = reference.encode(self.probe)
        self.ref_docs = reference.encode(self.docs)
        self.ref_queries = reference.encode(self.queries)
        log.info("torch fp32 reference in %.1fs", time.perf_counter() - started)

    def figures(
        self, encode: Callable[[Sequence[str]], np.ndarray], retrieval: bool = True
    ) -> dict[str, Any]:
        started = time.perf_counter()
        probe = encode(self.probe)
        seconds = time.perf_counter() - started
        figures: dict[str, Any] = {
            "cosine": cosine_stats(probe, self.ref_probe),
            "retrieval": None,
            "probe_texts_per_s": len(self.probe) / seconds,
        }
        if not retrieval:
            return figures
        docs, queries = encode(self.docs), encode(self.queries)
        return {
            **figures,
            "retrieval": {
                "docs": len(self.docs),
                "queries": len(self.queries),
                "k": TOP_K,
                "top10_agreement": top_k_agreement(
                    self.ref_queries, self.ref_docs, queries, docs, TOP_K
                ),
            },
        }


def onnx_encoder(
    model_dir: str | Path | None, backend: str, artifact: Path, threads: int | None
) -> Callable[[Sequence[str]], np.ndarray]:
    """`encode` of `artifact` on `backend`'s runtime, its accuracy report unchecked (it is what
    is being measured)."""
    from semsearch.encoder.model_files import read_model_files
    from semsearch.encoder.onnx.embedder import OnnxEmbedder, OnnxOptions

    files, options = read_model_files(model_dir), OnnxOptions(artifact_dir=artifact.parent)
    if backend.startswith("openvino"):
        from semsearch.encoder.onnx.openvino_embedder import OpenVinoEmbedder

        emb = OpenVinoEmbedder(files, threads, options, backend, artifact, check_accuracy=False)
        return emb.encode
    emb = OnnxEmbedder(files, backend, threads, options, artifact=artifact, check_accuracy=False)
    return emb.encode


def run_export(
    out_dir: Path,
    model_dir: str | Path | None = None,
    quantize: str | None = "int8",
    threads: int | None = None,
    thresholds: Thresholds | None = None,
) -> list[Path]:
    """Write the artifacts, the manifest and one accuracy report per artifact into `out_dir`;
    with int8, also the measured choice of backend `auto`."""
    from semsearch.encoder.model_files import read_model_files
    from semsearch.evaluation.backend_choice import write_backend_choice

    if quantize not in (None, "int8"):
        raise ValueError(f"unknown quantization {quantize!r}; supported: int8")
    files = read_model_files(model_dir)
    config = files.config
    out_dir.mkdir(parents=True, exist_ok=True)
    fp32 = export_fp32(out_dir / FP32_FILE, model_dir)
    optimized = optimize_fp32(
        fp32, out_dir / FP32_OPTIMIZED_FILE, config.num_attention_heads, config.hidden_size
    )
    write_manifest(out_dir, model_dir)
    measure = Measure(model_dir, threads)
    # The plain export is an intermediate (int8 is quantized from it): cosine figures only.
    built = [fp32, optimized]
    write_measured_report(fp32, "onnx", measure, model_dir, threads, retrieval=False)
    write_measured_report(optimized, "onnx", measure, model_dir, threads)
    if quantize == "int8":
        built.append(export_int8(fp32, out_dir / INT8_FILE, measure, files, threads, thresholds))
        built.append(
            export_openvino_int8(
                fp32, out_dir / OPENVINO_INT8_FILE, measure, files, threads, thresholds
            )
        )
    write_backend_choice(out_dir, threads, thresholds or Thresholds())
    return built


def export_int8(
    fp32: Path,
    int8: Path,
    measure: Measure,
    files: ModelFiles,
    threads: int | None,
    thresholds: Thresholds | None,
) -> Path:
    """Quantize `fp32` with the shipped plan (`QuantPlan()`) and write its report, which records
    the thresholds it was judged by (None: `Thresholds()`)."""
    from semsearch.encoder.onnx.quantize import QuantPlan, quantize_int8

    settings = quantize_int8(fp32, int8, QuantPlan(), files.config.num_hidden_layers)
    return judge_int8(int8, "onnx-int8", settings, measure, files, threads, thresholds)


def export_openvino_int8(
    fp32: Path,
    int8: Path,
    measure: Measure,
    files: ModelFiles,
    threads: int | None,
    thresholds: Thresholds | None,
) -> Path:
    """NNCF's static int8 of `fp32` with the shipped plan (`NncfPlan()`), calibrated on
    `calibration_feeds` (texts none of the measurements use), and its report."""
    from semsearch.encoder.onnx.nncf_quantize import NncfPlan, quantize_nncf
    from semsearch.encoder.wordpiece import WordPieceTokenizer

    tokenizer = WordPieceTokenizer.from_dir(files.model_dir)
    feeds = calibration_feeds(tokenizer, files.max_seq_length)
    settings = quantize_nncf(fp32, int8, NncfPlan(), files.config.num_hidden_layers, feeds)
    return judge_int8(int8, "openvino-int8", settings, measure, files, threads, thresholds)


def judge_int8(
    int8: Path,
    backend: str,
    settings: dict[str, Any],
    measure: Measure,
    files: ModelFiles,
    threads: int | None,
    thresholds: Thresholds | None,
) -> Path:
    """Measure `int8` on `backend`'s runtime and write its report, which records its quantization
    `settings` and the thresholds it was judged by (None: `Thresholds()`); warn when below."""
    thresholds = thresholds or Thresholds()
    figures = write_measured_report(
        int8,
        backend,
        measure,
        files.model_dir,
        threads,
        quantization=settings,
        thresholds=thresholds,
    )
    failed = below_thresholds(figures["cosine"], figures["retrieval"], thresholds)
    if failed:
        log.warning("%s is below the thresholds (%s): the server will refuse it", int8, failed)
    return int8


def write_measured_report(
    artifact: Path,
    backend: str,
    measure: Measure,
    model_dir: str | Path | None,
    threads: int | None,
    retrieval: bool = True,
    quantization: dict[str, Any] | None = None,
    thresholds: Thresholds | None = None,
) -> dict[str, Any]:
    """Measure `artifact`, write its report beside it; returns the figures."""
    figures = measure.figures(onnx_encoder(model_dir, backend, artifact, threads), retrieval)
    report = build_report(
        artifact,
        backend=backend,
        reference=REFERENCE,
        probe=measure.probe_info,
        cosine=figures["cosine"],
        retrieval=figures["retrieval"],
        quantization=quantization,
        thresholds=thresholds,
    )
    path = write_report(artifact, report)
    log.info("%s: %s, %s -> %s", artifact.name, figures["cosine"], figures["retrieval"], path)
    return figures


__all__ = [
    "Measure",
    "export_int8",
    "export_openvino_int8",
    "judge_int8",
    "onnx_encoder",
    "run_export",
    "write_measured_report",
]

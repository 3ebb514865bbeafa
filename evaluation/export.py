"""`semsearch export`: build the ONNX artifacts and the accuracy report beside each one.

Runs in the export toolchain (`.venv-export`, the `export` extra: torch, onnx, optimum-onnx):
export our encoder (fp32), fuse it with onnxruntime's BERT optimizer, quantize it to int8
(`encoder.onnx.quantize`), then measure every artifact against our torch fp32 encoder on real
text (`evaluation.corpus`) and write `<artifact>.accuracy.json`. `--search` measures the
quantization variants of the README table instead of writing artifacts.
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
from semsearch.encoder.onnx.export import (
    FP32_FILE,
    FP32_OPTIMIZED_FILE,
    INT8_FILE,
    export_fp32,
    optimize_fp32,
    write_manifest,
)
from semsearch.encoder.onnx.smooth import SmoothPlan
from semsearch.evaluation.corpus import join_paragraphs, long_texts, real_texts

log = logging.getLogger(__name__)

PROBE_REAL, PROBE_LONG = 1950, 50  # 2,000 texts of 3 to 400+ tokens
CORPUS_DOCS, CORPUS_QUERIES = 5000, 200
CALIBRATION_REAL, CALIBRATION_LONG = 480, 32  # sizes the smoothing of the search's variants
TOP_K = 10
REFERENCE = "torch fp32 (encoder.model.BertModel), same tokenizer"


def probe_set() -> list[str]:
    return list(real_texts(PROBE_REAL)) + long_texts(PROBE_LONG)


def retrieval_set(n_docs: int = CORPUS_DOCS, n_queries: int = CORPUS_QUERIES):
    """Real documents, and short real queries (the first words of other real texts)."""
    docs = list(real_texts(n_docs, seed=3))
    known = set(docs)
    queries = [
        " ".join(t.split()[:12]) for t in real_texts(4 * n_queries, seed=4) if t not in known
    ][:n_queries]
    return docs, queries


def calibration_paragraphs() -> list[str]:
    """Real paragraphs none of the measurements use: not a probe text, not inside a probe long
    text, not a retrieval document, not the opening of a retrieval query."""
    docs, queries = retrieval_set()
    seen = set(probe_set()) | set(docs)
    probe_long = long_texts(PROBE_LONG)
    openings = set(queries)

    def unseen(paragraph: str) -> bool:
        return (
            paragraph not in seen
            and " ".join(paragraph.split()[:12]) not in openings
            and not any(paragraph in text for text in probe_long)
        )

    return [p for p in real_texts(4 * CALIBRATION_REAL, seed=11) if unseen(p)]


def calibration_texts() -> list[str]:
    """The texts that size the smoothing (`encoder.onnx.smooth`): short paragraphs and long ones
    joined from the rest, so a variant is judged on texts it never saw."""
    fresh = calibration_paragraphs()
    return fresh[:CALIBRATION_REAL] + join_paragraphs(fresh[CALIBRATION_REAL:], CALIBRATION_LONG)


def calibration_feeds(tokenizer, max_length: int, batch_size: int = 32):
    """`calibration_texts()` as model feeds, longest first: dicts of int64 (batch, seq) arrays."""
    encodings = tokenizer.encode_batch(calibration_texts(), max_length=max_length)
    encodings.sort(key=len, reverse=True)
    for start in range(0, len(encodings), batch_size):
        arrays = tokenizer.pad(encodings[start : start + batch_size])  # each (batch, seq)
        yield {
            name: np.asarray(arrays[name], dtype=np.int64)
            for name in ("input_ids", "attention_mask", "token_type_ids")
        }


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


def _onnx_encoder(model_dir, backend: str, artifact: Path, threads: int | None):
    from semsearch.encoder.model_files import read_model_files
    from semsearch.encoder.onnx.embedder import OnnxEmbedder, OnnxOptions

    emb = OnnxEmbedder(
        read_model_files(model_dir),
        backend,
        threads,
        OnnxOptions(artifact_dir=artifact.parent),
        artifact=artifact,
        check_accuracy=False,
    )
    return emb.encode


def run_export(
    out_dir: Path,
    model_dir: str | Path | None = None,
    quantize: str | None = "int8",
    threads: int | None = None,
    thresholds: Thresholds | None = None,
) -> list[Path]:
    """Write the artifacts, the manifest and one accuracy report per artifact into `out_dir`."""
    from semsearch.encoder.model_files import read_model_files

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
    return built


def export_int8(
    fp32: Path,
    int8: Path,
    measure: Measure,
    files: ModelFiles,
    threads: int | None,
    thresholds: Thresholds | None,
) -> Path:
    """Quantize `fp32` with the shipped plan (`QuantPlan()`) and write its report."""
    from semsearch.encoder.onnx.quantize import QuantPlan, quantize_int8

    settings = quantize_int8(fp32, int8, QuantPlan(), files.config.num_hidden_layers)
    figures = write_measured_report(
        int8,
        "onnx-int8",
        measure,
        files.model_dir,
        threads,
        quantization=settings,
        thresholds=thresholds,
    )
    failed = below_thresholds(figures["cosine"], figures["retrieval"], thresholds or Thresholds())
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
    figures = measure.figures(_onnx_encoder(model_dir, backend, artifact, threads), retrieval)
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


NONE: tuple[str, ...] = ()
# Q/K/V and FFN-up inputs smoothed (alpha 0.8) in all of them.
SMOOTH_DOWN4 = SmoothPlan()  # + 4 FFN-down outlier channels
SMOOTH_UP4_DOWN32 = SmoothPlan(ffn_up_outliers=4, ffn_down_outliers=32)
SMOOTH_UP4 = SmoothPlan(ffn_up_outliers=4, ffn_down_outliers=0)
SEARCH_PLANS = {
    "all MatMuls + embeddings, per-tensor weights": dict(
        per_channel=False, keep_activation_matmuls=False, keep_embeddings=False, keep_roles=NONE
    ),
    "all MatMuls + embeddings": dict(
        keep_activation_matmuls=False, keep_embeddings=False, keep_roles=NONE
    ),
    "weight MatMuls only (QK^T, attn x V, embeddings fp32)": dict(keep_roles=NONE),
    "... and FFN down fp32": dict(keep_roles=("ffn_down",)),
    "... and FFN up + down fp32": dict(keep_roles=("ffn_up", "ffn_down")),
    "... and value + FFN up + down fp32 (shipped)": dict(),
    "smoothed + outliers (4 down), every weight MatMul int8": dict(
        keep_roles=NONE, smoothing=SMOOTH_DOWN4
    ),
    "smoothed + outliers (4 up, 32 down), every weight MatMul int8": dict(
        keep_roles=NONE, smoothing=SMOOTH_UP4_DOWN32
    ),
    "smoothed + outliers (4 up, 32 down), value fp32": dict(
        keep_roles=("value",), smoothing=SMOOTH_UP4_DOWN32
    ),
    "smoothed + outliers (4 up), value + FFN down fp32": dict(
        keep_roles=("value", "ffn_down"), smoothing=SMOOTH_UP4
    ),
    "shipped + value int8, smoothed": dict(
        keep_roles=("ffn_up", "ffn_down"),
        smoothing=SmoothPlan(ffn_up_alpha=None, ffn_down_outliers=0),
    ),
    "shipped + FFN down int8, 32 outliers": dict(
        keep_roles=("value", "ffn_up"),
        smoothing=SmoothPlan(qkv_alpha=None, ffn_up_alpha=None, ffn_down_outliers=32),
    ),
}


def run_search(work_dir: Path, model_dir=None, threads: int | None = None) -> str:
    """Quantize with each plan of SEARCH_PLANS and measure it; returns a Markdown table."""
    import onnx

    from semsearch.encoder.model_files import read_model_files
    from semsearch.encoder.onnx.quantize import QuantPlan, quantize_int8
    from semsearch.encoder.onnx.smooth import activation_ranges
    from semsearch.encoder.wordpiece import WordPieceTokenizer

    files = read_model_files(model_dir)
    config = files.config
    tokenizer = WordPieceTokenizer.from_dir(files.model_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    fp32 = export_fp32(work_dir / FP32_FILE, model_dir)
    write_manifest(work_dir, model_dir)
    measure = Measure(model_dir, threads)
    rows = [
        "| variant | nodes kept fp32 (incl. side paths) | size MB | min cos | mean cos | p1 cos | "
        "top-10 | texts/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ranges = None  # of the fp32 export on the calibration texts: the same for every plan
    for i, (name, kwargs) in enumerate(SEARCH_PLANS.items()):
        plan = QuantPlan(**kwargs)
        out = work_dir / f"search_{i}.onnx"
        if plan.smoothing is not None and ranges is None:
            feeds = calibration_feeds(tokenizer, files.max_seq_length)
            ranges = activation_ranges(onnx.load(str(fp32)), feeds, config.num_hidden_layers)
        settings = quantize_int8(fp32, out, plan, config.num_hidden_layers, ranges=ranges)
        f = measure.figures(_onnx_encoder(model_dir, "onnx-int8", out, threads))
        c, r = f["cosine"], f["retrieval"]
        rows.append(
            f"| {name} | {settings['nodes_excluded']} | {out.stat().st_size / 1e6:.1f} | "
            f"{c['min']:.4f} | {c['mean']:.5f} | {c['p1']:.4f} | {r['top10_agreement']:.3f} | "
            f"{f['probe_texts_per_s']:.0f} |"
        )
        log.info("%s: %s", name, rows[-1])
    f = measure.figures(_onnx_encoder(model_dir, "onnx", fp32, threads))
    c, r = f["cosine"], f["retrieval"]
    rows.append(
        f"| fp32 export (reference point) | all | {fp32.stat().st_size / 1e6:.1f} | "
        f"{c['min']:.6f} | {c['mean']:.6f} | {c['p1']:.6f} | {r['top10_agreement']:.3f} | "
        f"{f['probe_texts_per_s']:.0f} |"
    )
    return "\n".join(rows)


__all__ = [
    "Measure",
    "calibration_feeds",
    "calibration_paragraphs",
    "calibration_texts",
    "probe_set",
    "retrieval_set",
    "run_export",
    "run_search",
]

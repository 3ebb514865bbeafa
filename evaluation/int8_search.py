"""`semsearch export --search`: the int8 variants of docs/benchmarks.md's search table, measured.

Each plan of `SEARCH_PLANS` quantizes the fp32 export (`encoder.onnx.quantize`), some after the
smoothing rewrites (`encoder.onnx.smooth`) sized on calibration text that none of the measurements
use, and is measured as the shipped artifact is (`evaluation.export.Measure`). Writes no artifact.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from semsearch.encoder.onnx.artifacts import FP32_FILE
from semsearch.encoder.onnx.export import export_fp32, write_manifest
from semsearch.encoder.onnx.smooth import SmoothPlan
from semsearch.evaluation.export import Measure, onnx_encoder
from semsearch.evaluation.text_sets import calibration_feeds

log = logging.getLogger(__name__)

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


def run_search(work_dir: Path, model_dir=None, threads: int | None = None) -> Iterator[str]:
    """Quantize with each plan of SEARCH_PLANS and measure it: the lines of a Markdown table,
    each as soon as it is measured."""
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
    yield (
        "| variant | nodes kept fp32 (incl. side paths) | size MB | min cos | mean cos | p1 cos | "
        "top-10 | texts/s |"
    )
    yield "|---|---|---|---|---|---|---|---|"
    ranges = None  # of the fp32 export on the calibration texts: the same for every plan
    for i, (name, kwargs) in enumerate(SEARCH_PLANS.items()):
        plan = QuantPlan(**kwargs)
        out = work_dir / f"search_{i}.onnx"
        if plan.smoothing is not None and ranges is None:
            feeds = calibration_feeds(tokenizer, files.max_seq_length)
            ranges = activation_ranges(onnx.load(str(fp32)), feeds, config.num_hidden_layers)
        settings = quantize_int8(fp32, out, plan, config.num_hidden_layers, ranges=ranges)
        f = measure.figures(onnx_encoder(model_dir, "onnx-int8", out, threads))
        c, r = f["cosine"], f["retrieval"]
        yield (
            f"| {name} | {settings['nodes_excluded']} | {out.stat().st_size / 1e6:.1f} | "
            f"{c['min']:.4f} | {c['mean']:.5f} | {c['p1']:.4f} | {r['top10_agreement']:.3f} | "
            f"{f['probe_texts_per_s']:.0f} |"
        )
    f = measure.figures(onnx_encoder(model_dir, "onnx", fp32, threads))
    c, r = f["cosine"], f["retrieval"]
    yield (
        f"| fp32 export (reference point) | all | {fp32.stat().st_size / 1e6:.1f} | "
        f"{c['min']:.6f} | {c['mean']:.6f} | {c['p1']:.6f} | {r['top10_agreement']:.3f} | "
        f"{f['probe_texts_per_s']:.0f} |"
    )


__all__ = [
    "SEARCH_PLANS",
    "run_search",
]

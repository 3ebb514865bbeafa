"""`semsearch export --search openvino-int8`: NNCF int8 plans on OpenVINO, measured.

Each plan of `SEARCH_PLANS` quantizes the fp32 export with NNCF (`encoder.onnx.nncf_quantize`),
calibrated on texts none of the measurements use (`evaluation.text_sets`), and is measured as the
shipped artifact is (`evaluation.export.Measure`, on OpenVINO). One more plan is NNCF's own search,
`quantize_with_accuracy_control`: it quantizes everything, then returns the quantizers that cost
the most to float until the minimum cosine to the fp32 export on the calibration texts drops by at
most `MAX_DROP` (or `MAX_ITERATIONS` are spent). Writes no artifact; prints each row as soon as it
is measured.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from semsearch.encoder.onnx.artifacts import FP32_FILE, OUTPUT_NAME
from semsearch.encoder.onnx.export import export_fp32, write_manifest
from semsearch.encoder.onnx.nncf_quantize import FFN_DOWN_OUTLIERS_16, NncfPlan, quantize_nncf
from semsearch.encoder.onnx.smooth import SmoothPlan, activation_ranges
from semsearch.evaluation.export import Measure, onnx_encoder
from semsearch.evaluation.text_sets import calibration_feeds

log = logging.getLogger(__name__)

MAX_DROP = 0.01  # accuracy control: min cosine 1.0 (fp32) -> at least 0.99, the gate
# Each of its iterations returns one quantizer group to float and ranks the rest again (about
# 100 s here on 2 cores, half the validation batches ranking): bounded, it keeps its best model.
MAX_ITERATIONS, RANKING_BATCHES = 6, 8
FFN_DOWN = ("ffn_down",)
# NncfPlan fields; `smoothing` is None (no rewrite) unless a plan names one.
SEARCH_PLANS: dict[str, dict[str, Any]] = {
    "every weight MatMul + QK^T int8, SmoothQuant off": dict(smooth_quant_alpha=None),
    "... SmoothQuant 0.5": dict(smooth_quant_alpha=0.5),
    "... SmoothQuant 0.8": dict(smooth_quant_alpha=0.8),
    "... SmoothQuant 0.95 (NNCF's default)": dict(smooth_quant_alpha=0.95),
    "FFN down float, SmoothQuant off": dict(keep_roles=FFN_DOWN, smooth_quant_alpha=None),
    "FFN down + QK^T float, SmoothQuant off": dict(
        keep_roles=FFN_DOWN, keep_activation_matmuls=True, smooth_quant_alpha=None
    ),
    "FFN down + value float, SmoothQuant off": dict(
        keep_roles=("ffn_down", "value"), smooth_quant_alpha=None
    ),
    "FFN down float, SmoothQuant 0.7": dict(keep_roles=FFN_DOWN, smooth_quant_alpha=0.7),
    "FFN down float, SmoothQuant 0.8": dict(keep_roles=FFN_DOWN, smooth_quant_alpha=0.8),
    "FFN down float, SmoothQuant 0.9": dict(keep_roles=FFN_DOWN, smooth_quant_alpha=0.9),
    "FFN down float, SmoothQuant 0.8, symmetric activations": dict(
        keep_roles=FFN_DOWN, smooth_quant_alpha=0.8, preset="performance"
    ),
    "project smoothing (0.8) + outliers (4 up, 32 down), SmoothQuant off": dict(
        smooth_quant_alpha=None,
        smoothing=SmoothPlan(ffn_up_outliers=4, ffn_down_outliers=32),
    ),
    "... and value float": dict(
        keep_roles=("value",),
        smooth_quant_alpha=None,
        smoothing=SmoothPlan(ffn_up_outliers=4, ffn_down_outliers=32),
    ),
    "16 FFN-down outliers float, SmoothQuant off": dict(
        smooth_quant_alpha=None, smoothing=FFN_DOWN_OUTLIERS_16
    ),
    "16 FFN-down outliers float, SmoothQuant 0.5": dict(
        smooth_quant_alpha=0.5, smoothing=FFN_DOWN_OUTLIERS_16
    ),
    "32 FFN-down outliers float, SmoothQuant 0.8": dict(
        smoothing=SmoothPlan(qkv_alpha=None, ffn_up_alpha=None, ffn_down_outliers=32)
    ),
    "32 FFN-down outliers float, SmoothQuant 0.9": dict(
        smooth_quant_alpha=0.9,
        smoothing=SmoothPlan(qkv_alpha=None, ffn_up_alpha=None, ffn_down_outliers=32),
    ),
    "8 FFN-down outliers float, SmoothQuant 0.8": dict(
        smoothing=SmoothPlan(qkv_alpha=None, ffn_up_alpha=None, ffn_down_outliers=8)
    ),
    "16 FFN-down outliers float, SmoothQuant 0.8 (shipped)": dict(smoothing=FFN_DOWN_OUTLIERS_16),
}
ACCURACY_CONTROL = "NNCF accuracy control (min cosine drop <= 0.01), SmoothQuant 0.8"


def accuracy_controlled(fp32: Path, dst: Path, feeds: list[dict[str, np.ndarray]]) -> int:
    """NNCF's `quantize_with_accuracy_control` of `fp32` into `dst`; returns the quantizers it
    left float. Validation: the calibration batches, metric the min cosine to fp32 on them."""
    import nncf
    import onnx
    import openvino as ov
    from nncf.quantization.advanced_parameters import (
        AdvancedAccuracyRestorerParameters,
        AdvancedQuantizationParameters,
        AdvancedSmoothQuantParameters,
    )

    core = ov.Core()

    def run(model: Any) -> list[np.ndarray]:  # per batch, (batch, dim) unit vectors
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "candidate.onnx"
            onnx.save(model, str(path))
            compiled = core.compile_model(core.read_model(str(path)), "CPU")
        request = compiled.create_infer_request()
        return [np.array(request.infer(feed)[compiled.output(OUTPUT_NAME)]) for feed in feeds]

    reference = run(onnx.load(str(fp32)))

    def validate(model: Any, batches: Any) -> tuple[float, list[float]]:
        del batches  # always `feeds`, in order: the references line up with them
        per_batch = [
            float(np.min(np.sum(v * r, axis=1))) for v, r in zip(run(model), reference, strict=True)
        ]
        return min(per_batch), per_batch

    with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bars: not the result
        quantized = nncf.quantize_with_accuracy_control(
            onnx.load(str(fp32)),
            nncf.Dataset(feeds),
            nncf.Dataset(feeds),
            validate,
            max_drop=MAX_DROP,
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(feeds),
            advanced_quantization_parameters=AdvancedQuantizationParameters(
                smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=0.8)
            ),
            advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                max_num_iterations=MAX_ITERATIONS, ranking_subset_size=RANKING_BATCHES
            ),
        )
    onnx.save(quantized, str(dst))
    quantizers = sum(1 for n in quantized.graph.node if n.op_type == "QuantizeLinear")
    return quantizers


def run_openvino_search(
    work_dir: Path, model_dir=None, threads: int | None = None
) -> Iterator[str]:
    """Quantize with each plan and NNCF's accuracy control and measure each on OpenVINO: the lines
    of a Markdown table, each as soon as it is measured (texts/s: the 2,000 probe texts at batch
    32)."""
    import onnx

    from semsearch.encoder.model_files import read_model_files
    from semsearch.encoder.wordpiece import WordPieceTokenizer

    files = read_model_files(model_dir)
    layers = files.config.num_hidden_layers
    tokenizer = WordPieceTokenizer.from_dir(files.model_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    fp32 = export_fp32(work_dir / FP32_FILE, model_dir)
    write_manifest(work_dir, model_dir)
    measure = Measure(model_dir, threads)
    feeds = calibration_feeds(tokenizer, files.max_seq_length)
    ranges = activation_ranges(onnx.load(str(fp32)), feeds, layers)  # the same for every plan
    yield "| plan | nodes left float | size MB | min cos | mean cos | p1 cos | top-10 | texts/s |"
    yield "|---|---|---|---|---|---|---|---|"

    def row(name: str, kept: Any, path: Path, backend: str) -> str:
        f = measure.figures(onnx_encoder(model_dir, backend, path, threads))
        c, r = f["cosine"], f["retrieval"]
        return (
            f"| {name} | {kept} | {path.stat().st_size / 1e6:.1f} | {c['min']:.4f} | "
            f"{c['mean']:.5f} | {c['p1']:.4f} | {r['top10_agreement']:.3f} | "
            f"{f['probe_texts_per_s']:.0f} |"
        )

    for i, (name, kwargs) in enumerate(SEARCH_PLANS.items()):
        out = work_dir / f"openvino_search_{i}.onnx"
        plan = NncfPlan(**{"smoothing": None, **kwargs})  # a plan names its rewrites
        settings = quantize_nncf(fp32, out, plan, layers, feeds, ranges=ranges)
        yield row(name, settings["nodes_excluded"], out, "openvino-int8")
    yield row("fp32 export, f32 (reference point)", "all", fp32, "openvino")
    out = work_dir / "openvino_search_accuracy_control.onnx"
    quantizers = accuracy_controlled(fp32, out, feeds)
    yield row(ACCURACY_CONTROL, f"{quantizers} quantizers left", out, "openvino-int8")


__all__ = ["ACCURACY_CONTROL", "SEARCH_PLANS", "accuracy_controlled", "run_openvino_search"]

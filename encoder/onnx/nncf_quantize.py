"""Static int8 of the exported encoder with NNCF, for OpenVINO: the `openvino-int8` artifact.

NNCF's post-training quantization calibrates every activation scale on real text (static int8,
unlike `encoder.onnx.quantize`'s per-batch dynamic scales) and writes QuantizeLinear /
DequantizeLinear pairs into the ONNX graph, so the artifact stays an ONNX file; OpenVINO's CPU
plugin fuses each pair into an int8 kernel (VNNI where the CPU has it). NNCF's transformer preset
quantizes every weight MatMul and Q K^T; `NncfPlan` says what stays float (f32: the backend
serves it so, as its report measured it) and which rewrites run first: NNCF's SmoothQuant, and
the project's smoothing and outlier side paths (`encoder.onnx.smooth`). docs/benchmarks.md's
OpenVINO search table shows what each choice costs; the FFN down MatMuls (GELU outputs, outliers
~25x the median channel) carry most of the error.

Needs the export toolchain (the `export` extra: nncf, onnx, onnxruntime).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semsearch.encoder.onnx.graph import (
    ROLES,
    SIDE_PATH_MARK,
    weight_initializers,
    weight_matmuls,
)
from semsearch.encoder.onnx.smooth import SmoothPlan, activation_ranges, smooth

# The shipped plan's rewrite: the 16 FFN-down input channels of largest range multiplied in float
# on a side path, the rest of FFN down int8 (no smoothing here: NNCF's SmoothQuant does that).
FFN_DOWN_OUTLIERS_16 = SmoothPlan(qkv_alpha=None, ffn_up_alpha=None, ffn_down_outliers=16)

logger = logging.getLogger(__name__)

NNCF_HINT = (
    "the openvino-int8 artifact needs NNCF: pip install 'semsearch[export]' "
    "(or `make artifacts`, which builds the .venv-export toolchain)"
)
PRESETS = ("mixed", "performance")  # asymmetric or symmetric activation scales


@dataclass(frozen=True)
class NncfPlan:
    """What NNCF quantizes: written into the accuracy report as the quantization settings. The
    defaults are the shipped plan (docs/benchmarks.md, "The OpenVINO int8 search")."""

    # Weight MatMuls left float in every layer, by ROLES name.
    keep_roles: tuple[str, ...] = ()
    keep_activation_matmuls: bool = False  # Q K^T left float too
    # NNCF's SmoothQuant alpha for MatMul inputs (None: off): moves activation range into weights.
    smooth_quant_alpha: float | None = 0.8
    # The project's fp32-exact rewrites before NNCF (outlier side paths stay float); None: none.
    smoothing: SmoothPlan | None = FFN_DOWN_OUTLIERS_16
    preset: str = "mixed"

    def describe(self) -> dict[str, Any]:
        return asdict(self)


def float_nodes(model: Any, plan: NncfPlan, num_layers: int) -> list[str]:
    """Names of the nodes `plan` leaves out of int8, read from the exported (or smoothed) graph."""
    unknown = set(plan.keep_roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}; expected some of {ROLES}")
    out = [m.node for m in weight_matmuls(model, num_layers) if m.role in plan.keep_roles]
    weights = weight_initializers(model)
    for node in model.graph.node:
        if SIDE_PATH_MARK in node.name:
            out.append(node.name)  # the outlier channels' float side path
        elif plan.keep_activation_matmuls and node.op_type == "MatMul":
            if not any(i in weights for i in node.input):
                out.append(node.name)  # Q K^T, attention x V
    return out


def quantize_nncf(
    src: Path,
    dst: Path,
    plan: NncfPlan,
    num_layers: int,
    calibration: Sequence[dict[str, np.ndarray]],
    ranges: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Static int8 of `src` (the unfused fp32 export) into `dst`, calibrated on `calibration`
    (model feeds of real text, each a dict of int64 (batch, seq) arrays); returns the settings.

    `ranges` (`activation_ranges` of `src` on the same feeds) size `plan.smoothing` when given."""
    import onnx

    try:
        import nncf
        from nncf.quantization.advanced_parameters import (
            AdvancedQuantizationParameters,
            AdvancedSmoothQuantParameters,
        )
    except ImportError as e:
        raise ImportError(NNCF_HINT) from e
    if plan.preset not in PRESETS:
        raise ValueError(f"preset must be one of {PRESETS}, got {plan.preset!r}")
    if not calibration:
        raise ValueError("no calibration batches")
    # NNCF logs on its own handler at INFO (a line per node it skips): follow this process's level.
    logging.getLogger("nncf").setLevel(max(logging.INFO, logger.getEffectiveLevel()))
    model = onnx.load(str(src))
    rewrites = None
    if plan.smoothing is not None:
        if ranges is None:
            ranges = activation_ranges(model, calibration, num_layers)
        rewrites = smooth(model, ranges, plan.smoothing, num_layers)
    keep = float_nodes(model, plan, num_layers)
    alpha = -1.0 if plan.smooth_quant_alpha is None else plan.smooth_quant_alpha  # -1: off
    # NNCF draws progress bars on stdout; a command's stdout is its result: they go to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        quantized = nncf.quantize(
            model,
            nncf.Dataset(list(calibration)),
            preset=nncf.QuantizationPreset(plan.preset),
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(calibration),  # every batch: the texts are few and chosen
            ignored_scope=nncf.IgnoredScope(names=keep) if keep else None,
            advanced_parameters=AdvancedQuantizationParameters(
                smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=alpha)
            ),
        )
    onnx.checker.check_model(quantized)
    tmp = dst.with_name(dst.name + ".tmp")
    onnx.save(quantized, str(tmp))
    tmp.replace(dst)
    settings = {
        "tool": f"nncf {nncf.__version__} quantize (ONNX backend), for OpenVINO",
        "mode": "static",
        "weights": "int8 symmetric per-channel",
        "activations": "int8 per-tensor, calibrated ("
        + ("asymmetric" if plan.preset == "mixed" else "symmetric")
        + ")",
        "calibration": {
            "batches": len(calibration),
            "texts": int(sum(len(feed["input_ids"]) for feed in calibration)),
        },
        "plan": plan.describe(),
        "rewrites": rewrites,
        "nodes_excluded": len(keep),
        "excluded": keep,
    }
    logger.info("quantized %s -> %s with NNCF (%d nodes left float)", src.name, dst, len(keep))
    return settings


__all__ = [
    "FFN_DOWN_OUTLIERS_16",
    "NNCF_HINT",
    "PRESETS",
    "NncfPlan",
    "float_nodes",
    "quantize_nncf",
]

"""int8 quantization of the exported encoder with optimum's `ORTQuantizer`, keeping its accuracy.

Plain dynamic int8 of all-MiniLM-L6-v2 (every MatMul, as sentence-transformers'
`export_dynamic_quantized_onnx_model` does) loses too much: the two activation-by-activation
MatMuls per layer (Q K^T and attention x V) get one per-tensor scale for a whole activation on each
side. Here the weight MatMuls are quantized per channel and those activation MatMuls stay fp32;
`QuantPlan` says which weight MatMuls stay fp32 and which rewrites run first (smoothing and outlier
channels, `encoder.onnx.smooth`, calibrated on real text); docs/benchmarks.md's search table
shows what each choice costs.

The configuration follows the CPU the export runs on (`cpu_quant_target`): avx512_vnni, avx2 or
arm64, as optimum's `AutoQuantizationConfig` presets. Needs the export toolchain (`optimum-onnx`).
"""

from __future__ import annotations

import logging
import platform
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from semsearch.encoder.onnx.graph import ROLES, SIDE_PATH_MARK, weight_initializers, weight_matmuls
from semsearch.encoder.onnx.smooth import SmoothPlan, activation_ranges, smooth

logger = logging.getLogger(__name__)

QUANT_HINT = (
    "int8 quantization needs optimum's ORTQuantizer: pip install 'semsearch[export]' "
    "(or `make artifacts`, which builds the .venv-export toolchain)"
)
TARGETS = ("avx512_vnni", "avx2", "arm64")


@dataclass(frozen=True)
class QuantPlan:
    """What to quantize: written into the accuracy report as the quantization settings."""

    target: str = "auto"  # avx512_vnni | avx2 | arm64 | auto (from this CPU)
    per_channel: bool = True
    keep_activation_matmuls: bool = True  # Q K^T and attention x V stay fp32
    keep_embeddings: bool = True  # Gather of the embedding tables stays fp32
    # Weight MatMuls kept fp32 in every layer, by ROLES name. The feed-forward pair and the value
    # projection carry most of the error of per-tensor activation scales: keeping all three is the
    # plan that passes with room (docs/benchmarks.md, "The int8 search", for the ones that pass
    # narrowly).
    keep_roles: tuple[str, ...] = ("value", "ffn_up", "ffn_down")
    # fp32-exact rewrites before quantizing (encoder.onnx.smooth); None quantizes the export as is.
    smoothing: SmoothPlan | None = None
    keep_last_layers: int = 0  # the last N encoder layers stay fp32
    keep_layers: tuple[int, ...] = ()  # encoder layers kept fp32 entirely
    extra_exclude: tuple[str, ...] = field(default_factory=tuple)

    def describe(self) -> dict[str, Any]:
        return asdict(self)


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_quant_target() -> str:
    """The optimum preset for this CPU: avx512_vnni, avx2 or arm64."""
    machine = platform.machine().lower()
    if machine in ("arm64", "aarch64"):
        return "arm64"
    flags = cpu_flags()
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return "avx512_vnni"
    if "avx2" in flags:
        return "avx2"
    raise RuntimeError(
        f"no int8 preset for this CPU ({machine}, flags without avx2); serve the fp32 "
        "ONNX backend (SEMSEARCH_BACKEND=onnx) instead"
    )


def excluded_nodes(model: Any, plan: QuantPlan, num_layers: int) -> list[str]:
    """Names of the nodes `plan` keeps in fp32, read from the exported (or smoothed) graph."""
    unknown = set(plan.keep_roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}; expected some of {ROLES}")
    weights = weight_initializers(model)
    out: list[str] = []
    for node in model.graph.node:
        if SIDE_PATH_MARK in node.name:
            out.append(node.name)  # the outlier channels' fp32 side path
        elif node.op_type == "Gather" and plan.keep_embeddings and node.input[0] in weights:
            out.append(node.name)  # an embedding table lookup
        elif node.op_type == "MatMul" and not any(i in weights for i in node.input):
            if plan.keep_activation_matmuls:
                out.append(node.name)  # Q K^T, attention x V
    for m in weight_matmuls(model, num_layers):
        if (
            m.role in plan.keep_roles
            or m.layer in plan.keep_layers
            or (plan.keep_last_layers and m.layer >= num_layers - plan.keep_last_layers)
        ):
            out.append(m.node)
    out.extend(plan.extra_exclude)
    return out


def quantization_config(plan: QuantPlan, nodes_to_exclude: list[str]) -> Any:
    try:
        from optimum.onnxruntime.configuration import AutoQuantizationConfig
    except ImportError as e:
        raise ImportError(QUANT_HINT) from e
    target = cpu_quant_target() if plan.target == "auto" else plan.target
    if target not in TARGETS:
        raise ValueError(f"unknown quantization target {target!r}; expected one of {TARGETS}")
    preset = getattr(AutoQuantizationConfig, target)
    return preset(
        is_static=False,
        per_channel=plan.per_channel,
        nodes_to_exclude=nodes_to_exclude,
        operators_to_quantize=["MatMul", "Gather"],
    )


def quantize_int8(
    src: Path,
    dst: Path,
    plan: QuantPlan,
    num_layers: int,
    calibration: Iterable[dict[str, np.ndarray]] = (),
    ranges: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Dynamic int8 of `src` (the unfused fp32 export) into `dst`; returns the settings used.

    When `plan.smoothing` is set, `ranges` (from `activation_ranges`) size it, or else they are
    measured on `calibration` (model feeds of real text)."""
    import onnx

    try:
        from optimum.onnxruntime import ORTQuantizer
    except ImportError as e:
        raise ImportError(QUANT_HINT) from e
    model = onnx.load(str(src))
    rewrites = None
    if plan.smoothing is not None:
        if ranges is None:
            ranges = activation_ranges(model, calibration, num_layers)
        rewrites = smooth(model, ranges, plan.smoothing, num_layers)
        onnx.checker.check_model(model)
    exclude = excluded_nodes(model, plan, num_layers)
    config = quantization_config(plan, exclude)
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        work = Path(tmp)
        onnx.save(model, str(work / "model.onnx"))
        quantizer = ORTQuantizer.from_pretrained(work, file_name="model.onnx")
        quantizer.quantize(quantization_config=config, save_dir=work / "out")
        produced = work / "out" / "model_quantized.onnx"
        onnx.checker.check_model(str(produced))
        produced.replace(dst)
    settings = {
        "tool": "optimum ORTQuantizer",
        "target": cpu_quant_target() if plan.target == "auto" else plan.target,
        "mode": "dynamic",
        "weights": "int8 symmetric " + ("per-channel" if plan.per_channel else "per-tensor"),
        "activations": "uint8 asymmetric per-tensor, computed per batch",
        "operators": ["MatMul", "Gather"],
        "plan": plan.describe(),
        "rewrites": rewrites,
        "nodes_excluded": len(exclude),
        "excluded": exclude,
    }
    logger.info("quantized %s -> %s (%d nodes kept fp32)", src.name, dst, len(exclude))
    return settings


__all__ = [
    "QUANT_HINT",
    "TARGETS",
    "QuantPlan",
    "cpu_quant_target",
    "excluded_nodes",
    "quantization_config",
    "quantize_int8",
]

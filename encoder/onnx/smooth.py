"""Make the exported encoder quantizable with one int8 scale per activation tensor.

Dynamic int8 gives each activation one scale per tensor. BERT's LayerNorm outputs carry a few
outlier channels (max |x| ~30 where the median channel peaks at ~2), and so does the GELU output
feeding FFN down (~25): that one scale leaves the other channels with a handful of levels. Two
fp32-exact rewrites, chosen per activation group by `SmoothPlan`, move the outliers away:

- smoothing (SmoothQuant, Xiao et al. 2023): for an activation X read by MatMuls with weights W
  (in, out), (X / s) @ (s[:, None] * W) with s_j = max|X_j| ** alpha / max|W_j,:| ** (1 - alpha),
  so the range moves into the weights, which are quantized per output channel.
- outlier channels (LLM.int8()-style, with channels fixed by calibration): the k channels of
  largest range are zeroed on the int8 path and multiplied in fp32 on a side path,
  X[..., idx] @ W[idx] (a Gather and a (k, out) MatMul), added to the int8 product.

max|X_j| comes from running the fp32 graph on calibration text (`activation_ranges`). Post-LN
BERT reuses each LayerNorm output as the next residual, so 1/s cannot be folded into the
LayerNorm: it is an explicit `Mul` (one per activation, shared by the MatMuls that read it), whose
vector also holds the zeros of the outlier channels. Measured per role in docs/benchmarks.md
("The int8 search"): smoothing fixes the value and FFN up projections; FFN down gets worse with
it (its inputs are GELU outputs, mostly near zero) but outlier channels fix it (simulated on layer
0: 4 channels cut the relative error of its product from 5.4 % to 1.2 %).
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from semsearch.encoder.onnx.graph import SIDE_PATH_MARK, WeightMatMul, weight_matmuls

logger = logging.getLogger(__name__)

# Activation groups by the roles that read them: Q, K and V share the attention input.
GROUPS = {
    "query": "qkv",
    "key": "qkv",
    "value": "qkv",
    "attention_output": "attention_output",
    "ffn_up": "ffn_up",
    "ffn_down": "ffn_down",
}


@dataclass(frozen=True)
class SmoothPlan:
    """Per activation group: the smoothing alpha (None: no smoothing) and the number of outlier
    channels multiplied in fp32 (0: none)."""

    qkv_alpha: float | None = 0.8
    attention_output_alpha: float | None = None
    ffn_up_alpha: float | None = 0.8
    ffn_down_alpha: float | None = None
    qkv_outliers: int = 0
    attention_output_outliers: int = 0
    ffn_up_outliers: int = 0
    ffn_down_outliers: int = 4

    def alpha(self, group: str) -> float | None:
        return getattr(self, f"{group}_alpha")

    def outliers(self, group: str) -> int:
        return getattr(self, f"{group}_outliers")

    def describe(self) -> dict[str, Any]:
        return asdict(self)


def activation_ranges(
    model: Any,
    feeds: Iterable[dict[str, np.ndarray]],
    num_layers: int,
    threads: int | None = None,
) -> dict[str, np.ndarray]:
    """Per-channel max |x| of each weight MatMul's activation input over `feeds` (real tokens only:
    padded positions are masked out by `attention_mask`)."""
    import onnx
    import onnxruntime as ort

    names = sorted({m.activation for m in weight_matmuls(model, num_layers)})
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in known)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(
        probe.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    ranges: dict[str, np.ndarray] = {}
    for feed in feeds:
        outputs = session.run(names, feed)
        valid = feed["attention_mask"].astype(bool)  # (batch, seq)
        for name, x in zip(names, outputs, strict=True):
            channel_max = np.abs(x[valid]).max(axis=0)  # (tokens, C) -> (C,)
            ranges[name] = np.maximum(ranges.get(name, channel_max), channel_max)
    if not ranges:
        raise ValueError("no calibration batches")
    return ranges


def smoothing_scales(
    act_max: np.ndarray, weights: Sequence[np.ndarray], alpha: float
) -> np.ndarray:
    """s (in,) for one activation and the weights (in, out) of every MatMul that reads it."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    w_max = np.max([np.abs(w).max(axis=1) for w in weights], axis=0)  # (in,)
    act = np.maximum(act_max.astype(np.float64), 1e-5)
    w = np.maximum(w_max.astype(np.float64), 1e-5)
    return (act**alpha / w ** (1.0 - alpha)).astype(np.float32)


def _group_by_activation(matmuls: list[WeightMatMul]) -> dict[str, list[WeightMatMul]]:
    groups: dict[str, list[WeightMatMul]] = {}
    for m in matmuls:
        groups.setdefault(m.activation, []).append(m)
    return groups


def smooth(
    model: Any, ranges: dict[str, np.ndarray], plan: SmoothPlan, num_layers: int
) -> dict[str, int]:
    """Rewrite `model` in place per `plan`; fp32 outputs stay equal up to rounding.

    Returns how many activations were smoothed and how many outlier side paths were added."""
    from onnx import numpy_helper

    matmuls = weight_matmuls(model, num_layers)
    inits = {i.name: i for i in model.graph.initializer}
    _check_rewritable(matmuls, inits)
    new_nodes = []
    counts = {"smoothed": 0, "outlier_paths": 0}
    for activation, readers in _group_by_activation(matmuls).items():
        group = GROUPS[readers[0].role]
        alpha, k = plan.alpha(group), plan.outliers(group)
        if alpha is None and k == 0:
            continue
        if activation not in ranges:
            raise ValueError(f"no calibration range for {activation}")
        weights = [numpy_helper.to_array(inits[m.weight]) for m in readers]  # each (in, out)
        s = np.ones(weights[0].shape[0], np.float32)  # (in,)
        if alpha is not None:
            s = smoothing_scales(ranges[activation], weights, alpha)
            counts["smoothed"] += 1
        # The k channels of largest range once smoothed, in index order.
        outliers = np.sort(np.argsort(-(ranges[activation] / s))[:k]).astype(np.int64)  # (k,)
        new_nodes += _rewrite_activation(model, activation, readers, weights, s, outliers)
        counts["outlier_paths"] += len(readers) if k else 0
        logger.debug(
            "%s (%s): alpha %s, s in [%.3g, %.3g], outlier channels %s",
            activation,
            group,
            alpha,
            s.min(),
            s.max(),
            outliers.tolist(),
        )
    model.graph.node.extend(new_nodes)
    _sort_topologically(model)
    return counts


def _check_rewritable(matmuls: list[WeightMatMul], inits: dict[str, Any]) -> None:
    """What the rewrite assumes of the graph, true of `encoder.onnx.export`'s."""
    weights = [m.weight for m in matmuls]
    if len(set(weights)) != len(weights):
        raise ValueError("a weight initializer feeds two MatMuls: cannot rescale it for both")
    if missing := [w for w in weights if w not in inits]:
        raise ValueError(f"weights {missing[:3]} are Constant nodes, not initializers")
    # A side path rewires the readers of a MatMul's output; one of them must not be a MatMul
    # whose activation this rewrite has already captured by name.
    if clash := {m.activation for m in matmuls} & {m.output for m in matmuls}:
        raise ValueError(f"activations {sorted(clash)[:3]} are weight MatMul outputs (no bias)")


def _rewrite_activation(
    model: Any,
    activation: str,
    readers: list[WeightMatMul],
    weights: list[np.ndarray],
    s: np.ndarray,
    outliers: np.ndarray,
) -> list:
    """The Mul by 1/s (0 on the outlier channels) before `readers`, their weights scaled by s,
    and a side path per reader for the outlier channels. Returns the nodes to add."""
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    nodes = {n.name: n for n in model.graph.node}
    inv_scale = (1.0 / s).astype(np.float32)  # (in,)
    inv_scale[outliers] = 0.0  # these channels take the fp32 side path instead
    scale_name = f"{activation}/smooth/inv_scale"
    scaled_activation = f"{activation}/smooth"
    model.graph.initializer.append(numpy_helper.from_array(inv_scale, scale_name))
    added = [
        helper.make_node(
            "Mul", [activation, scale_name], [scaled_activation], name=scaled_activation
        )
    ]
    gathered = f"{activation}{SIDE_PATH_MARK}gathered"
    if outliers.size:
        index_name = f"{activation}{SIDE_PATH_MARK}channels"
        model.graph.initializer.append(numpy_helper.from_array(outliers, index_name))
        added.append(
            helper.make_node("Gather", [activation, index_name], [gathered], name=gathered, axis=-1)
        )  # (..., in) -> (..., k)
    for m, w in zip(readers, weights, strict=True):
        scaled = (w * s[:, None]).astype(w.dtype)  # (in, out)
        scaled[outliers] = 0.0  # keeps the per-channel weight scales free of them
        inits[m.weight].CopyFrom(numpy_helper.from_array(scaled, m.weight))
        node = nodes[m.node]
        node.input[0] = scaled_activation
        if outliers.size:
            added += _side_path(model, node, gathered, w[outliers])
    return added


def _side_path(model: Any, node: Any, gathered: str, rows: np.ndarray) -> list:
    """fp32 `gathered @ rows` added to `node`'s output; the output's readers are rewired."""
    from onnx import helper, numpy_helper

    product = node.output[0]
    weight_name = f"{node.name}{SIDE_PATH_MARK}weight"
    side = f"{node.name}{SIDE_PATH_MARK}matmul"
    total = f"{node.name}{SIDE_PATH_MARK}sum"
    model.graph.initializer.append(numpy_helper.from_array(rows, weight_name))  # (k, out)
    for reader in model.graph.node:
        for i, name in enumerate(reader.input):
            if name == product:
                reader.input[i] = total
    return [
        helper.make_node("MatMul", [gathered, weight_name], [side], name=side),
        helper.make_node("Add", [product, side], [total], name=total),
    ]


def _sort_topologically(model: Any) -> None:
    """Order the nodes so each comes after its inputs' producers, keeping the original order
    where it is free (Kahn's algorithm with the original position as priority)."""
    nodes = list(model.graph.node)
    producer = {out: i for i, n in enumerate(nodes) for out in n.output}
    waiting_on = [
        {producer[x] for x in n.input if x in producer and producer[x] != i}
        for i, n in enumerate(nodes)
    ]
    readers: dict[int, list[int]] = {}
    for i, deps in enumerate(waiting_on):
        for d in deps:
            readers.setdefault(d, []).append(i)
    ready = [i for i, deps in enumerate(waiting_on) if not deps]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for r in readers.get(i, []):
            waiting_on[r].discard(i)
            if not waiting_on[r]:
                heapq.heappush(ready, r)
    if len(order) != len(nodes):
        raise ValueError("the rewritten graph has a cycle")
    del model.graph.node[:]
    model.graph.node.extend(nodes[i] for i in order)


__all__ = ["GROUPS", "SmoothPlan", "activation_ranges", "smooth", "smoothing_scales"]

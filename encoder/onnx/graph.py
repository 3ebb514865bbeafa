"""The weight MatMuls of the exported encoder graph, each with its layer and role.

Roles come from positions, not node names (exporters name nodes differently): every layer has six
weight MatMuls in graph order (query, key, value, attention output, FFN up, FFN down), as
`encoder.layers` runs them. Nodes that `encoder.onnx.smooth` adds (the fp32 side path of outlier
channels) carry `SIDE_PATH_MARK` in their names and are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ROLES = ("query", "key", "value", "attention_output", "ffn_up", "ffn_down")
SIDE_PATH_MARK = "/outliers/"


@dataclass(frozen=True)
class WeightMatMul:
    node: str
    activation: str  # the MatMul's activation input
    weight: str  # its initializer, (in, out)
    output: str
    layer: int
    role: str


def weight_initializers(model: Any) -> set[str]:
    names = {init.name for init in model.graph.initializer}
    return names | {n.output[0] for n in model.graph.node if n.op_type == "Constant"}


def weight_matmuls(model: Any, num_layers: int) -> list[WeightMatMul]:
    """The encoder's weight MatMuls (activation x initializer), in graph order, with roles."""
    weights = weight_initializers(model)
    found = []
    for node in model.graph.node:
        if node.op_type != "MatMul" or SIDE_PATH_MARK in node.name:
            continue
        if node.input[1] in weights and node.input[0] not in weights:
            layer, position = divmod(len(found), len(ROLES))
            found.append(
                WeightMatMul(
                    node.name, node.input[0], node.input[1], node.output[0], layer, ROLES[position]
                )
            )
    if len({m.node for m in found}) != len(found):
        raise ValueError("weight MatMuls share a node name: cannot tell them apart")
    if len(found) != len(ROLES) * num_layers:
        raise ValueError(
            f"expected {len(ROLES) * num_layers} weight MatMuls in the exported graph, found "
            f"{len(found)}: not a graph from encoder.onnx.export"
        )
    return found


__all__ = ["ROLES", "SIDE_PATH_MARK", "WeightMatMul", "weight_initializers", "weight_matmuls"]

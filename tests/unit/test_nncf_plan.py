"""`NncfPlan`: which nodes of the exported graph stay float (NNCF itself runs in the export
toolchain; the artifact it builds is checked in test_openvino_int8_conformance)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from semsearch.encoder.onnx.artifacts import FP32_FILE
from semsearch.encoder.onnx.embedder import default_artifact_dir
from semsearch.encoder.onnx.graph import SIDE_PATH_MARK, weight_matmuls
from semsearch.encoder.onnx.nncf_quantize import NncfPlan, float_nodes
from semsearch.encoder.onnx.smooth import SmoothPlan, smooth

LAYERS = 6


@pytest.fixture(scope="module")
def graph():
    return onnx.load(str(default_artifact_dir() / FP32_FILE))


def test_kept_roles_name_their_matmul_in_every_layer(graph):
    kept = float_nodes(graph, NncfPlan(keep_roles=("ffn_down",), smoothing=None), LAYERS)
    down = [m for m in weight_matmuls(graph, LAYERS) if m.role == "ffn_down"]
    assert kept == [m.node for m in down] and len(kept) == LAYERS


def test_activation_matmuls_are_the_two_per_layer_without_weights(graph):
    plan = NncfPlan(keep_roles=(), keep_activation_matmuls=True, smoothing=None)
    kept = float_nodes(graph, plan, LAYERS)
    weighted = {m.node for m in weight_matmuls(graph, LAYERS)}
    assert len(kept) == 2 * LAYERS and not set(kept) & weighted


def test_the_outlier_side_paths_stay_float(graph):
    model = onnx.ModelProto()
    model.CopyFrom(graph)
    matmuls = weight_matmuls(model, LAYERS)
    ranges = {m.activation: np.ones(1536, np.float32) for m in matmuls if m.role == "ffn_down"}
    plan = SmoothPlan(qkv_alpha=None, ffn_up_alpha=None, ffn_down_outliers=16)
    smooth(model, ranges, plan, LAYERS)
    kept = float_nodes(model, NncfPlan(), LAYERS)  # the shipped plan: side paths only
    assert kept and all(SIDE_PATH_MARK in name for name in kept)


def test_unknown_roles_are_refused(graph):
    with pytest.raises(ValueError, match="unknown roles"):
        float_nodes(graph, NncfPlan(keep_roles=("ffn_middle",)), LAYERS)

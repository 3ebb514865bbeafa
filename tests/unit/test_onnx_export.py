"""The ONNX export of a tiny seeded encoder, against transformers' `BertModel` on the same weights.

The export traces `BertModel.forward_padded` with pooling and normalization (`encoder.onnx.export`).
Both the plain graph and onnxruntime's fused one must give transformers' mean-pooled vectors on
batches of other shapes than the traced one, the plain graph must keep the weight MatMuls in the
role order the int8 rewrites rely on (`encoder.onnx.graph`), and the fusion must find every layer's
attention. The real model's artifacts are checked in tests/conformance/test_onnx_conformance.py.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import TINY_BERT as TINY
from tiny import random_reference_bert

from semsearch.encoder.model import BertModel
from semsearch.encoder.onnx.artifacts import OUTPUT_NAME, POOLED_NAME
from semsearch.encoder.onnx.graph import ROLES, weight_matmuls
from semsearch.encoder.pooling import l2_normalize, mean_pool
from semsearch.encoder.weights import match_state_dict

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
transformers = pytest.importorskip("transformers")

# The module each role's MatMul belongs to, in transformers' (and our) parameter names.
ROLE_MODULES = {
    "query": "attention/self/query/",
    "key": "attention/self/key/",
    "value": "attention/self/value/",
    "attention_output": "attention/output/dense/",
    "ffn_up": "intermediate/dense/",
    "ffn_down": "/output/dense/",
}


@pytest.fixture(scope="module")
def reference():
    return random_reference_bert(TINY)


@pytest.fixture(scope="module")
def artifacts(reference, tmp_path_factory) -> dict[str, Path]:
    from semsearch.encoder.onnx.export import SentenceEmbeddingGraph, export_module, optimize_fp32

    ours = BertModel(TINY)
    ours.load_state_dict(match_state_dict(reference.state_dict(), ours), strict=True)
    out = tmp_path_factory.mktemp("onnx")
    plain = export_module(SentenceEmbeddingGraph(ours).eval(), out / "model.onnx")
    fused = optimize_fp32(plain, out / "model_optimized.onnx", 4, 32)
    return {"plain": plain, "fused": fused}


def _batch(B: int, T: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, T + 1, size=B)
    lengths[0] = T
    mask = (np.arange(T)[None, :] < lengths[:, None]).astype(np.int64)  # right padding
    ids = rng.integers(1, TINY.vocab_size, size=(B, T)) * mask
    types = rng.integers(0, TINY.type_vocab_size, size=(B, T)) * mask
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


@pytest.mark.parametrize("graph", ["plain", "fused"])
@pytest.mark.parametrize(("B", "T"), [(1, 3), (4, 11), (7, 40)])
def test_exported_graph_matches_transformers(reference, artifacts, graph, B, T):
    batch = _batch(B, T, seed=B * T)
    session = ort.InferenceSession(str(artifacts[graph]), providers=["CPUExecutionProvider"])
    unit, pooled = session.run([OUTPUT_NAME, POOLED_NAME], batch)
    with torch.inference_mode():
        tensors = {k: torch.from_numpy(v) for k, v in batch.items()}
        hidden = reference(**tensors).last_hidden_state  # (B, T, C)
        expected = mean_pool(hidden, tensors["attention_mask"])  # (B, C)
    np.testing.assert_allclose(pooled, expected.numpy(), atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(unit, l2_normalize(expected).numpy(), atol=1e-5, rtol=0)


def test_weight_matmuls_are_found_in_role_order(artifacts):
    """The roles `weight_matmuls` assigns by position are those of the nodes' modules."""
    model = onnx.load(str(artifacts["plain"]))
    found = weight_matmuls(model, TINY.num_hidden_layers)
    assert [m.role for m in found] == list(ROLES) * TINY.num_hidden_layers
    for m in found:
        assert f"layer.{m.layer}/" in m.node and ROLE_MODULES[m.role] in m.node, m


def test_onnxruntime_fuses_every_layer(artifacts):
    ops = Counter(n.op_type for n in onnx.load(str(artifacts["fused"])).graph.node)
    layers = TINY.num_hidden_layers
    assert ops["Attention"] == layers
    assert ops["EmbedLayerNormalization"] == 1
    assert ops["SkipLayerNormalization"] == 2 * layers
    assert ops["Softmax"] == 0  # no attention left unfused

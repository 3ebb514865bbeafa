"""The quantization rewrites (`encoder.onnx.smooth`) on the real exported graph.

Smoothing and outlier side paths must leave the fp32 model's outputs unchanged (they only move
range between activations and weights), keep a valid, topologically sorted graph, and pick the
channels the calibration says are outliers. The int8 figures of the rewritten variants are in the
docs/benchmarks.md's search table (`semsearch export --search`); the shipped plan does not use them.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from semsearch.encoder.model_files import read_model_files
from semsearch.encoder.onnx.artifacts import FP32_FILE, OUTPUT_NAME
from semsearch.encoder.onnx.embedder import default_artifact_dir
from semsearch.encoder.onnx.graph import ROLES, SIDE_PATH_MARK, weight_matmuls
from semsearch.encoder.onnx.quantize import QuantPlan, excluded_nodes
from semsearch.encoder.onnx.smooth import SmoothPlan, activation_ranges, smooth, smoothing_scales
from semsearch.encoder.wordpiece import WordPieceTokenizer
from semsearch.evaluation.corpus import long_texts, real_texts
from semsearch.evaluation.text_sets import (
    calibration_paragraphs,
    calibration_texts,
    probe_set,
    retrieval_set,
)

LAYERS = 6
EVERYTHING = SmoothPlan(
    qkv_alpha=0.8,
    attention_output_alpha=0.5,
    ffn_up_alpha=0.8,
    ffn_down_alpha=None,
    qkv_outliers=2,
    attention_output_outliers=2,
    ffn_up_outliers=4,
    ffn_down_outliers=8,
)


@pytest.fixture(scope="module")
def exported() -> onnx.ModelProto:
    return onnx.load(str(default_artifact_dir() / FP32_FILE))


@pytest.fixture(scope="module")
def feeds() -> list[dict[str, np.ndarray]]:
    tokenizer = WordPieceTokenizer.from_dir(read_model_files(None).model_dir)
    texts = list(real_texts(40, seed=21)) + long_texts(4, seed=22)
    out = []
    for start in range(0, len(texts), 11):
        arrays = tokenizer.pad(tokenizer.encode_batch(texts[start : start + 11], max_length=256))
        out.append({k: np.asarray(v, dtype=np.int64) for k, v in arrays.items()})
    return out


@pytest.fixture(scope="module")
def ranges(exported, feeds) -> dict[str, np.ndarray]:
    return activation_ranges(exported, feeds[:2], LAYERS)


def rewrite(exported, ranges, plan: SmoothPlan) -> tuple[onnx.ModelProto, dict[str, int]]:
    model = onnx.ModelProto()
    model.CopyFrom(exported)
    counts = smooth(model, ranges, plan, LAYERS)
    return model, counts


@pytest.fixture(scope="module")
def rewritten(exported, ranges) -> tuple[onnx.ModelProto, dict[str, int]]:
    return rewrite(exported, ranges, EVERYTHING)


def run(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], feed)[0]


def test_the_export_has_six_weight_matmuls_per_layer_in_role_order(exported):
    found = weight_matmuls(exported, LAYERS)
    assert [m.role for m in found] == list(ROLES) * LAYERS
    assert [m.layer for m in found] == [i // len(ROLES) for i in range(len(ROLES) * LAYERS)]
    names = {m.role: m.node for m in found if m.layer == 0}
    assert names["query"].endswith("/query/MatMul")
    assert names["ffn_up"].endswith("/intermediate/dense/MatMul")
    inits = {i.name: tuple(i.dims) for i in exported.graph.initializer}
    assert {inits[m.weight] for m in found if m.role == "ffn_down"} == {(1536, 384)}


def test_ranges_are_per_channel_maxima_over_real_tokens(exported, feeds, ranges):
    assert len(ranges) == 4 * LAYERS  # Q/K/V share one input
    ffn_in = next(m.activation for m in weight_matmuls(exported, LAYERS) if m.role == "ffn_up")
    assert ffn_in.endswith("LayerNorm/LayerNormalization_output_0")  # the first FFN-up input
    assert ranges[ffn_in].shape == (384,)
    # The outlier channels of post-LN BERT: one channel far above the median one.
    assert ranges[ffn_in].max() > 5 * np.median(ranges[ffn_in])
    # Padding changes nothing: the same texts padded further give the same ranges.
    wide = {k: np.pad(v, ((0, 0), (0, 7))) for k, v in feeds[0].items()}
    assert np.allclose(
        activation_ranges(exported, [wide], LAYERS)[ffn_in],
        activation_ranges(exported, feeds[:1], LAYERS)[ffn_in],
        rtol=1e-5,
    )


@pytest.mark.parametrize(
    "plan, smoothed, side_paths",
    [
        (EVERYTHING, 3 * LAYERS, len(ROLES) * LAYERS),
        (SmoothPlan(), 2 * LAYERS, LAYERS),  # the search's default: 4 FFN-down outliers
        (SmoothPlan(ffn_down_outliers=0), 2 * LAYERS, 0),  # smoothing alone, no Gather
    ],
)
def test_rewrites_keep_the_fp32_outputs(exported, ranges, feeds, plan, smoothed, side_paths):
    model, counts = rewrite(exported, ranges, plan)
    assert counts == {"smoothed": smoothed, "outlier_paths": side_paths}
    onnx.checker.check_model(model, full_check=True)  # includes the topological order
    for feed in feeds[2:]:  # texts the calibration did not see
        before, after = run(exported, feed), run(model, feed)
        assert np.abs(after - before).max() < 2e-5
        cosine = np.sum(before * after, axis=1)  # both L2-normalized
        assert cosine.min() > 0.999999


def test_outlier_channels_take_the_side_path(exported, rewritten, ranges):
    model, _ = rewritten
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    ffn_down = [m for m in weight_matmuls(model, LAYERS) if m.role == "ffn_down"][0]
    activation = ffn_down.activation.removesuffix("/smooth")
    inv_scale = inits[f"{activation}/smooth/inv_scale"]
    channels = inits[f"{activation}{SIDE_PATH_MARK}channels"]
    # No smoothing on FFN down: the 8 largest calibrated ranges are the outliers.
    assert set(channels.tolist()) == set(np.argsort(-ranges[activation])[:8].tolist())
    assert np.all(inv_scale[channels] == 0) and np.all(np.delete(inv_scale, channels) == 1)
    assert np.all(inits[ffn_down.weight][channels] == 0)
    original = {i.name: numpy_helper.to_array(i) for i in exported.graph.initializer}
    side = inits[f"{ffn_down.node}{SIDE_PATH_MARK}weight"]  # (k, out): the original rows
    assert np.array_equal(side, original[ffn_down.weight][channels])


def test_smoothed_outliers_use_the_original_rows(exported, rewritten, ranges):
    """FFN up is smoothed and has outliers: its int8 weight is scaled by s, the side path not."""
    model, _ = rewritten
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    original = {i.name: numpy_helper.to_array(i) for i in exported.graph.initializer}
    ffn_up = [m for m in weight_matmuls(model, LAYERS) if m.role == "ffn_up"][2]
    activation = ffn_up.activation.removesuffix("/smooth")
    inv_scale = inits[f"{activation}/smooth/inv_scale"]
    channels = inits[f"{activation}{SIDE_PATH_MARK}channels"]
    kept = np.delete(np.arange(inv_scale.size), channels)
    scaled, before = inits[ffn_up.weight], original[ffn_up.weight]  # (in, out)
    np.testing.assert_allclose(scaled[kept] * inv_scale[kept, None], before[kept], rtol=1e-5)
    assert not np.allclose(scaled[kept], before[kept])  # smoothing did rescale them
    side = inits[f"{ffn_up.node}{SIDE_PATH_MARK}weight"]
    np.testing.assert_array_equal(side, before[channels])


def test_calibration_shares_no_text_with_the_measurements():
    docs, queries = retrieval_set()
    probe = probe_set()
    paragraphs = calibration_paragraphs()
    assert not set(paragraphs) & (set(probe) | set(docs))
    assert not any(p in text for p in paragraphs for text in probe[-50:])  # the long probes
    assert not {" ".join(p.split()[:12]) for p in paragraphs} & set(queries)
    calibration = calibration_texts()
    assert len(calibration) == 512 and sum(len(t) >= 1500 for t in calibration) >= 32
    assert all(t in paragraphs or "\n\n" in t for t in calibration)


def test_side_paths_stay_fp32_when_quantizing(rewritten):
    model, _ = rewritten
    kept = excluded_nodes(model, QuantPlan(keep_roles=()), LAYERS)
    side = [n.name for n in model.graph.node if SIDE_PATH_MARK in n.name]
    assert side and set(side) <= set(kept)
    weight_nodes = {m.node for m in weight_matmuls(model, LAYERS)}
    assert not weight_nodes & set(kept)  # every weight MatMul is quantized


def test_smoothing_scales_follow_the_formula():
    act = np.array([8.0, 1.0, 0.5], np.float32)
    w1 = np.array([[0.5, -1.0], [2.0, 0.1], [0.25, 0.25]], np.float32)  # (in, out)
    w2 = np.array([[0.1], [4.0], [-0.5]], np.float32)
    s = smoothing_scales(act, [w1, w2], alpha=0.5)
    expected = np.sqrt(act / np.array([1.0, 4.0, 0.5]))  # max |w| per input row over both
    assert np.allclose(s, expected)
    assert np.allclose(smoothing_scales(act, [w1], alpha=1.0), act)
    with pytest.raises(ValueError, match="alpha"):
        smoothing_scales(act, [w1], alpha=1.5)


def test_a_graph_not_from_our_export_is_refused(exported):
    model = onnx.ModelProto()
    model.CopyFrom(exported)
    query = weight_matmuls(model, LAYERS)[0].node
    first = next(n for n in model.graph.node if n.name == query)
    model.graph.node.remove(first)
    with pytest.raises(ValueError, match="not a graph from encoder.onnx.export"):
        weight_matmuls(model, LAYERS)

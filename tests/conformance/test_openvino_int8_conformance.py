"""The `openvino-int8` artifact (NNCF static int8 on OpenVINO) against fp32, recomputed here.

As for `onnx-int8` (test_onnx_conformance): vs the fp32 ONNX export (itself equal to our torch
encoder and to sentence-transformers) on 2,000 real texts of 3 to 400+ tokens, min and mean cosine
and the top-10 agreement of 200 real queries searching those texts, each at least its
`Thresholds()` default (0.99, 0.997, 0.95): the figures the server requires of the report, which is
not trusted here. The artifact comes from `make artifacts`.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from semsearch.encoder import load_embedder
from semsearch.encoder.onnx.accuracy import (
    AccuracyReportError,
    Thresholds,
    cosine_stats,
    report_path,
    top_k_agreement,
)
from semsearch.encoder.onnx.artifacts import MANIFEST_FILE, MODEL_CONFIG_DIR, OPENVINO_INT8_FILE
from semsearch.encoder.onnx.embedder import OnnxOptions, default_artifact_dir
from semsearch.evaluation.text_sets import calibration_texts

ov = GATES = Thresholds()


@pytest.fixture(scope="module")
def int8():
    return load_embedder(backend="openvino-int8")


@pytest.fixture(scope="module")
def int8_vectors(int8, texts) -> np.ndarray:
    return int8.encode(texts)


def test_int8_cosine_to_fp32(int8_vectors, fp32_vectors):
    stats = cosine_stats(int8_vectors, fp32_vectors)
    print(f"\nopenvino-int8 vs fp32 ONNX: {stats}")
    assert stats["min"] >= GATES.min_cosine and stats["mean"] >= GATES.mean_cosine, stats
    np.testing.assert_allclose(np.linalg.norm(int8_vectors, axis=1), 1.0, atol=1e-5)


def test_int8_top10_agreement_with_fp32(fp32, int8, fp32_vectors, int8_vectors, queries):
    agreement = top_k_agreement(
        fp32.encode(queries), fp32_vectors, int8.encode(queries), int8_vectors, k=10
    )
    print(f"\nopenvino-int8 vs fp32 top-10 agreement: {agreement:.4f}")
    assert agreement >= GATES.top10_agreement


def test_the_graph_is_int8_and_its_report_says_how(int8):
    import onnx

    graph = onnx.load(str(int8.artifact), load_external_data=False).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("QuantizeLinear") >= 24  # at least four activations per layer
    settings = int8.report["quantization"]
    assert settings["mode"] == "static" and settings["tool"].startswith("nncf")
    assert int8.fingerprint()["quantization"] == "int8-static"


def test_calibration_texts_are_not_the_measured_ones(texts):
    # The shipped artifact is calibrated on calibration_texts(): none of the judged texts.
    assert not set(calibration_texts()) & set(texts)


def test_batch_equals_one_at_a_time(int8, texts):
    sample = texts[:12] + texts[-3:]
    batched = int8.encode(sample, batch_size=32)
    single = np.concatenate([int8.encode([t]) for t in sample])
    assert cosine_stats(batched, single)["min"] >= 0.999  # static scales: padding changes nothing


@pytest.fixture
def artifact_copy(tmp_path):
    """A copy of the artifact directory holding what openvino-int8 needs."""
    src = default_artifact_dir()
    for name in (OPENVINO_INT8_FILE, OPENVINO_INT8_FILE + ".accuracy.json", MANIFEST_FILE):
        shutil.copy(src / name, tmp_path / name)
    shutil.copytree(src / MODEL_CONFIG_DIR, tmp_path / MODEL_CONFIG_DIR)
    return tmp_path


def test_refused_below_the_gates_or_without_its_report(artifact_copy):
    options = OnnxOptions(artifact_dir=artifact_copy)
    report = report_path(artifact_copy / OPENVINO_INT8_FILE)
    data = json.loads(report.read_text())
    data["cosine"]["min"] = 0.9
    report.write_text(json.dumps(data))
    with pytest.raises(AccuracyReportError, match="min"):
        load_embedder(backend="openvino-int8", onnx_options=options)
    report.unlink()
    with pytest.raises(AccuracyReportError):
        load_embedder(backend="openvino-int8", onnx_options=options)


def test_bf16_is_refused_for_the_int8_artifact():
    with pytest.raises(ValueError, match="f32"):
        load_embedder(backend="openvino-int8", onnx_options=OnnxOptions(openvino_precision="bf16"))

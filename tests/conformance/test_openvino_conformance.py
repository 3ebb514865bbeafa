"""The `openvino` backend against the fp32 ONNX export it runs (itself equal to our torch encoder
and to sentence-transformers: test_onnx_conformance, test_encoder_conformance).

In f32 (the default) it must equal fp32 ONNX; in bf16 (this CPU has it natively) the vectors must
stay inside the gates an int8 artifact must pass (`Thresholds()`: min and mean cosine on 2,000
real texts of 3 to 400+ tokens, top-10 agreement over them with 200 real queries).
"""

from __future__ import annotations

import numpy as np
import pytest

from semsearch.encoder import load_embedder
from semsearch.encoder.onnx.accuracy import (
    FP32_MIN_COSINE,
    Thresholds,
    cosine_stats,
    top_k_agreement,
)
from semsearch.encoder.onnx.embedder import OnnxOptions

ov = GATES = Thresholds()


@pytest.fixture(scope="module")
def native():
    """bf16, as `SEMSEARCH_OPENVINO_PRECISION=bf16` serves it."""
    return load_embedder(backend="openvino", onnx_options=OnnxOptions(openvino_precision="bf16"))


@pytest.fixture(scope="module")
def native_vectors(native, texts) -> np.ndarray:
    return native.encode(texts)


def test_native_precision_is_inside_the_int8_gates(native, native_vectors, fp32_vectors):
    stats = cosine_stats(native_vectors, fp32_vectors)
    print(f"\nopenvino {native.precision} vs fp32 ONNX: {stats}")
    assert stats["min"] >= GATES.min_cosine and stats["mean"] >= GATES.mean_cosine
    np.testing.assert_allclose(np.linalg.norm(native_vectors, axis=1), 1.0, atol=1e-5)


def test_native_precision_top10_agreement(native, fp32, native_vectors, fp32_vectors, queries):
    agreement = top_k_agreement(
        fp32.encode(queries), fp32_vectors, native.encode(queries), native_vectors, k=10
    )
    print(f"\nopenvino {native.precision} vs fp32 top-10 agreement: {agreement:.4f}")
    assert agreement >= GATES.top10_agreement


def test_f32_equals_fp32_onnx(texts, fp32_vectors):
    f32 = load_embedder(backend="openvino")  # the default precision
    assert f32.precision == "f32"
    rows = list(range(300)) + list(range(len(texts) - 20, len(texts)))  # long ones included
    stats = cosine_stats(f32.encode([texts[i] for i in rows]), fp32_vectors[rows])
    assert stats["min"] >= FP32_MIN_COSINE, stats


def test_batch_equals_one_at_a_time_and_unnormalized_is_the_pooled_vector(native, texts):
    sample = texts[:16] + texts[-4:]
    batched = native.encode(sample, batch_size=32)
    single = np.concatenate([native.encode([t]) for t in sample])
    assert cosine_stats(batched, single)["min"] >= 0.9999  # bf16 sums differ with the padding
    pooled = native.encode(sample, normalize=False)
    unit = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
    np.testing.assert_allclose(unit, batched, atol=1e-5)


def test_fingerprint_names_backend_and_precision(native, fp32):
    fingerprint = native.fingerprint()
    assert fingerprint["backend"] == "openvino" and fingerprint["precision"] == native.precision
    assert fingerprint["weights_sha256"] == fp32.fingerprint()["weights_sha256"]
    assert fingerprint != fp32.fingerprint()  # a collection refuses vectors of another runtime

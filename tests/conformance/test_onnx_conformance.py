"""The ONNX artifacts against the references, recomputed here (the JSON reports are not trusted).

fp32 ONNX (plain and fused) vs our torch encoder: min cosine >= `FP32_MIN_COSINE` (0.99999). int8
vs fp32 ONNX on 2,000 real texts of 3 to 400+ tokens: min and mean cosine and the top-10 agreement
with fp32 searching those 2,000 texts with 200 real queries, each at least its `Thresholds()`
default (0.99, 0.997, 0.95), the figures the server requires. Artifacts come from `make artifacts`;
SEMSEARCH_MODELS_DIR (`semsearch.paths`) points them at the `onnx/` of another models directory.
"""

from __future__ import annotations

import numpy as np
import pytest

from semsearch.encoder import load_embedder
from semsearch.encoder.model_files import read_model_files
from semsearch.encoder.onnx.accuracy import (
    FP32_MIN_COSINE,
    Thresholds,
    cosine_stats,
    top_k_agreement,
)
from semsearch.encoder.onnx.artifacts import FP32_FILE
from semsearch.encoder.onnx.embedder import OnnxEmbedder, OnnxOptions, default_artifact_dir

INT8 = Thresholds()


@pytest.fixture(scope="module")
def int8():
    return load_embedder(backend="onnx-int8")


@pytest.fixture(scope="module")
def int8_vectors(int8, texts) -> np.ndarray:
    return int8.encode(texts)


def test_probe_set_spans_3_to_400_plus_tokens(fp32, texts):
    lengths = np.array([len(e) for e in fp32.tokenizer.encode_batch(texts)])
    assert len(texts) >= 2000
    assert lengths.min() <= 3 and lengths.max() >= 400


def test_fp32_onnx_matches_torch(fp32_vectors, texts):
    """500 of the texts (the 50 long ones included): torch is the slow side here."""
    rows = list(range(450)) + list(range(len(texts) - 50, len(texts)))
    torch_vectors = load_embedder(backend="torch").encode([texts[i] for i in rows])
    fp32_vectors = fp32_vectors[rows]
    stats = cosine_stats(fp32_vectors, torch_vectors)
    print(f"\nONNX fp32 (fused) vs torch: {stats}")
    assert stats["min"] >= FP32_MIN_COSINE
    np.testing.assert_allclose(fp32_vectors, torch_vectors, atol=2e-5, rtol=0)


def test_plain_export_matches_fused(fp32_vectors, texts):
    """The unfused export (what int8 is quantized from) equals the fused graph."""
    plain = OnnxEmbedder(
        read_model_files(None),
        "onnx",
        options=OnnxOptions(),
        artifact=default_artifact_dir() / FP32_FILE,
    )
    stats = cosine_stats(plain.encode(texts[:500]), fp32_vectors[:500])
    assert stats["min"] >= FP32_MIN_COSINE


def test_int8_cosine_to_fp32(int8_vectors, fp32_vectors):
    stats = cosine_stats(int8_vectors, fp32_vectors)
    print(f"\nONNX int8 vs fp32: {stats}")
    assert stats["min"] >= INT8.min_cosine
    assert stats["mean"] >= INT8.mean_cosine
    np.testing.assert_allclose(np.linalg.norm(int8_vectors, axis=1), 1.0, atol=1e-5)


def test_int8_top10_agreement_with_fp32(fp32, int8, fp32_vectors, int8_vectors, queries):
    assert len(queries) == 200
    agreement = top_k_agreement(
        fp32.encode(queries), fp32_vectors, int8.encode(queries), int8_vectors, k=10
    )
    print(f"\nint8 vs fp32 top-10 agreement over {len(fp32_vectors)} documents: {agreement:.4f}")
    assert agreement >= INT8.top10_agreement

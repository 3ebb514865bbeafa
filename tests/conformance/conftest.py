"""What the artifact conformance tests compare against, computed once per session: the probe
texts (2,000 real texts of 3 to 400+ tokens), 200 real queries, and the fp32 ONNX export's
vectors (itself checked against our torch encoder in test_onnx_conformance)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from semsearch.evaluation.text_sets import probe_set, retrieval_set


@pytest.fixture(scope="session")
def texts() -> list[str]:
    return probe_set()


@pytest.fixture(scope="session")
def queries() -> list[str]:
    return retrieval_set(n_docs=50, n_queries=200)[1]


@pytest.fixture(scope="session")
def fp32() -> Any:
    from semsearch.encoder import load_embedder

    return load_embedder(backend="onnx")


@pytest.fixture(scope="session")
def fp32_vectors(fp32, texts) -> np.ndarray:
    return fp32.encode(texts)

"""The accuracy report's figures and the loader's refusals, on small arrays and a copied report."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from semsearch.encoder.model_files import file_sha256
from semsearch.encoder.onnx.accuracy import (
    FP32_MIN_COSINE,
    AccuracyReportError,
    Thresholds,
    check_report,
    cosine_stats,
    report_path,
    top_k,
    top_k_agreement,
)


def test_cosine_stats_against_a_direct_computation():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 16))
    b = a + rng.normal(scale=0.1, size=a.shape)
    stats = cosine_stats(a.astype(np.float32), b.astype(np.float32))
    direct = [x @ y / np.linalg.norm(x) / np.linalg.norm(y) for x, y in zip(a, b, strict=True)]
    assert stats["min"] == pytest.approx(min(direct), abs=1e-6)
    assert stats["mean"] == pytest.approx(float(np.mean(direct)), abs=1e-6)
    assert stats["min"] <= stats["p1"] <= stats["mean"] < 1.0
    with pytest.raises(ValueError, match="shapes differ"):
        cosine_stats(a, b[:10])


def test_top_k_is_exact_search_best_first():
    rng = np.random.default_rng(1)
    docs, queries = rng.normal(size=(200, 8)), rng.normal(size=(5, 8))
    got = top_k(queries, docs, 10)
    expected = np.argsort(-(queries @ docs.T), axis=1)[:, :10]
    np.testing.assert_array_equal(got, expected)


def test_top_k_agreement_counts_shared_hits():
    rng = np.random.default_rng(2)
    docs, queries = rng.normal(size=(100, 8)), rng.normal(size=(20, 8))
    assert top_k_agreement(queries, docs, queries, docs, k=10) == 1.0
    # Orthogonal-ish noise in the candidate's documents loses some of the hits, never adds any.
    noisy = top_k_agreement(queries, docs, queries, docs + rng.normal(scale=2.0, size=docs.shape))
    assert 0.0 <= noisy < 1.0


DEFAULT = Thresholds()
# Figures just above the default thresholds: a report that passes.
PASSING = {
    "min_cosine": DEFAULT.min_cosine + 0.005,
    "mean_cosine": DEFAULT.mean_cosine + 0.002,
    "top10_agreement": DEFAULT.top10_agreement + 0.03,
}


def _artifact_with_report(tmp_path: Path, **figures: float) -> Path:
    """An artifact and its report, with `figures` (by `Thresholds` field name) over PASSING's."""
    artifact = tmp_path / "model_int8.onnx"
    artifact.write_bytes(b"not really a model, but hashed all the same")
    values = {**PASSING, **figures}
    report = {
        "version": 1,
        "artifact": {"file": artifact.name, "sha256": file_sha256(artifact), "size_bytes": 43},
        "cosine": {"min": values["min_cosine"], "mean": values["mean_cosine"]},
        "retrieval": {"top10_agreement": values["top10_agreement"]},
    }
    report_path(artifact).write_text(json.dumps(report))
    return artifact


def test_a_good_report_passes(tmp_path):
    artifact = _artifact_with_report(tmp_path)
    assert check_report(artifact, Thresholds())["cosine"]["min"] == PASSING["min_cosine"]


def test_missing_report_is_refused_with_the_fix(tmp_path):
    artifact = _artifact_with_report(tmp_path)
    report_path(artifact).unlink()
    with pytest.raises(AccuracyReportError, match="no accuracy report.*make artifacts"):
        check_report(artifact, Thresholds())


def test_the_defaults_are_the_documented_ones():
    """The one place these numbers are written in code; the README and settings quote them."""
    assert asdict(DEFAULT) == {"min_cosine": 0.99, "mean_cosine": 0.997, "top10_agreement": 0.95}
    assert FP32_MIN_COSINE == 0.99999


@pytest.mark.parametrize("field", ["min_cosine", "mean_cosine", "top10_agreement"])
def test_figures_below_thresholds_are_refused_and_named(tmp_path, field):
    minimum = getattr(DEFAULT, field)
    low = minimum - 0.004
    artifact = _artifact_with_report(tmp_path, **{field: low})
    with pytest.raises(AccuracyReportError, match="below the thresholds") as info:
        check_report(artifact, Thresholds())
    assert f"{field} {low:.5f} < {minimum}" in str(info.value)
    others = set(asdict(DEFAULT)) - {field}
    assert not any(name in str(info.value) for name in others)


def test_thresholds_are_configurable(tmp_path):
    low = DEFAULT.min_cosine - 0.04
    artifact = _artifact_with_report(tmp_path, min_cosine=low)
    check_report(artifact, Thresholds(min_cosine=low - 0.01))
    with pytest.raises(AccuracyReportError):
        check_report(artifact, Thresholds(min_cosine=low - 0.01, top10_agreement=0.999))


def test_a_report_of_another_file_is_refused(tmp_path):
    artifact = _artifact_with_report(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    moved = other / artifact.name
    moved.write_bytes(b"a different model")
    shutil.copy(report_path(artifact), report_path(moved))
    with pytest.raises(AccuracyReportError, match="describes another file"):
        check_report(moved, Thresholds())


def test_a_broken_report_is_refused(tmp_path):
    artifact = _artifact_with_report(tmp_path)
    report_path(artifact).write_text("{not json")
    with pytest.raises(AccuracyReportError, match="not valid JSON"):
        check_report(artifact, Thresholds())

"""Accuracy reports of ONNX artifacts: measured against torch fp32, written beside each artifact.

A report (`<artifact>.accuracy.json`) holds the cosine figures (min / mean / 1st percentile) of the
artifact's vectors against our torch fp32 encoder on a probe set of real texts of all lengths, the
top-10 agreement of a search over a real corpus (the same queries and documents embedded by both),
the artifact's sha256 and size, and the quantization settings. `check_report` is what the loader
calls: a missing report, another artifact's report or figures below the thresholds are refused,
with the reason. Only numpy here: the vectors are computed by the caller (`evaluation/export.py`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semsearch.encoder.model_files import file_sha256

logger = logging.getLogger(__name__)

REPORT_SUFFIX = ".accuracy.json"
REPORT_VERSION = 1
REBUILD_HINT = "rebuild it with `make artifacts` (or `semsearch export --quantize int8`)"


class AccuracyReportError(RuntimeError):
    """An artifact's accuracy report is missing, stale, or below the thresholds."""


# Minimum cosine of an fp32 encoder (torch, fp32 ONNX) to its reference on the same text: the same
# math in another order, so equal up to float rounding.
FP32_MIN_COSINE = 0.99999


@dataclass(frozen=True)
class Thresholds:
    """Minimum figures an int8 artifact must reach against fp32: the one source of these defaults
    (the service settings, `semsearch verify` and the tests read them from here)."""

    min_cosine: float = 0.99
    mean_cosine: float = 0.997
    top10_agreement: float = 0.95


def report_path(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + REPORT_SUFFIX)


def cosine_stats(candidate: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Row-wise cosine of two (n, C) arrays: min, mean and 1st percentile."""
    if candidate.shape != reference.shape or candidate.ndim != 2:
        raise ValueError(f"shapes differ: {candidate.shape} vs {reference.shape}")
    a = candidate.astype(np.float64)
    b = reference.astype(np.float64)
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {
        "min": float(cos.min()),
        "mean": float(cos.mean()),
        "p1": float(np.percentile(cos, 1)),
        "n": int(cos.shape[0]),
    }


def top_k(queries: np.ndarray, docs: np.ndarray, k: int) -> np.ndarray:
    """Exact inner-product search: (q, k) indices of the best documents, best first."""
    scores = queries @ docs.T  # (q, n)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (q, k) unordered
    order = np.take_along_axis(scores, part, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(part, order, axis=1)


def top_k_agreement(
    ref_queries: np.ndarray,
    ref_docs: np.ndarray,
    cand_queries: np.ndarray,
    cand_docs: np.ndarray,
    k: int = 10,
) -> float:
    """Mean share of the reference's top-k documents that the candidate's top-k also returns."""
    ref = top_k(ref_queries, ref_docs, k)
    cand = top_k(cand_queries, cand_docs, k)
    overlap = [len(set(r.tolist()) & set(c.tolist())) / k for r, c in zip(ref, cand, strict=True)]
    return float(np.mean(overlap))


def build_report(
    artifact: Path,
    *,
    backend: str,
    reference: str,
    probe: dict[str, Any],
    cosine: dict[str, float],
    retrieval: dict[str, Any],
    quantization: dict[str, Any] | None,
    thresholds: Thresholds | None,
) -> dict[str, Any]:
    return {
        "version": REPORT_VERSION,
        "artifact": {
            "file": artifact.name,
            "sha256": file_sha256(artifact),
            "size_bytes": artifact.stat().st_size,
        },
        "backend": backend,
        "reference": reference,
        "probe": probe,
        "cosine": cosine,
        "retrieval": retrieval,
        "quantization": quantization,
        "thresholds_at_build": asdict(thresholds) if thresholds else None,
    }


def write_report(artifact: Path, report: dict[str, Any]) -> Path:
    path = report_path(artifact)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def read_report(artifact: Path) -> dict[str, Any]:
    path = report_path(artifact)
    if not path.is_file():
        raise AccuracyReportError(
            f"{artifact} has no accuracy report ({path.name} is missing); refusing to serve an "
            f"unverified int8 model: {REBUILD_HINT}"
        )
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise AccuracyReportError(f"{path} is not valid JSON ({e}): {REBUILD_HINT}") from e
    if not isinstance(report, dict) or report.get("version") != REPORT_VERSION:
        raise AccuracyReportError(
            f"{path} is not a version {REPORT_VERSION} report: {REBUILD_HINT}"
        )
    return report


def below_thresholds(
    cosine: dict[str, Any], retrieval: dict[str, Any], thresholds: Thresholds
) -> list[str]:
    """The figures of a report (its "cosine" and "retrieval" parts) below `thresholds`, as text;
    empty when all pass."""
    measured = {
        "min_cosine": float(cosine["min"]),
        "mean_cosine": float(cosine["mean"]),
        "top10_agreement": float(retrieval["top10_agreement"]),
    }
    return [
        f"{name} {measured[name]:.5f} < {minimum}"
        for name, minimum in asdict(thresholds).items()
        if measured[name] < minimum
    ]


def check_report(
    artifact: Path, thresholds: Thresholds, sha256: str | None = None
) -> dict[str, Any]:
    """The report of `artifact`, validated: it describes this very file and meets `thresholds`.

    `sha256` is the artifact's hash when the caller has it already (it is computed otherwise).
    """
    report = read_report(artifact)
    path = report_path(artifact)
    actual = sha256 or file_sha256(artifact)
    recorded = report.get("artifact", {}).get("sha256")
    if recorded != actual:
        raise AccuracyReportError(
            f"{path} describes another file (sha256 {str(recorded)[:12]}..., the artifact is "
            f"{actual[:12]}...): {REBUILD_HINT}"
        )
    try:
        failed = below_thresholds(report["cosine"], report["retrieval"], thresholds)
    except (KeyError, TypeError, ValueError) as e:
        raise AccuracyReportError(f"{path} lacks a figure ({e!r}): {REBUILD_HINT}") from e
    if failed:
        raise AccuracyReportError(
            f"refusing {artifact.name}: its accuracy report is below the thresholds "
            f"({'; '.join(failed)}). Re-export with more nodes kept in fp32, serve the fp32 "
            "backend (SEMSEARCH_BACKEND=onnx), or lower the SEMSEARCH_INT8_* thresholds knowingly"
        )
    return report


__all__ = [
    "FP32_MIN_COSINE",
    "REPORT_SUFFIX",
    "AccuracyReportError",
    "Thresholds",
    "below_thresholds",
    "build_report",
    "check_report",
    "cosine_stats",
    "read_report",
    "report_path",
    "top_k",
    "top_k_agreement",
    "write_report",
]

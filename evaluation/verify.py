"""`semsearch verify`: parity of our from-scratch components with the reference implementations.

Each check runs on the real texts shipped with the project (`evaluation.corpus`) and reports a
measured figure against a threshold; the command exits non-zero when any check fails. The references
(transformers' fast tokenizer, sentence-transformers) are test dependencies, imported here only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from semsearch.encoder.onnx.accuracy import FP32_MIN_COSINE, Thresholds
from semsearch.evaluation.checks import Check, reference_module
from semsearch.evaluation.corpus import long_texts, real_texts
from semsearch.evaluation.verify_decoder import check_decoder

log = logging.getLogger(__name__)

MAX_ABS_DIFF_TORCH = 1e-5
# Judged by the int8 gates: int8 artifacts, and openvino (bf16 where SEMSEARCH_OPENVINO_PRECISION
# asks for it).
LOSSY_BACKENDS = ("onnx-int8", "openvino-int8", "openvino")


def probe_texts(n: int) -> list[str]:
    """Real texts of all lengths: `n` paragraphs plus n/10 texts longer than the model's window."""
    return list(real_texts(n)) + long_texts(max(n // 10, 1))


def check_tokenizer(model_dir: str, texts: Sequence[str]) -> Check:
    transformers = reference_module("transformers")
    from semsearch.encoder import WordPieceTokenizer

    ours = WordPieceTokenizer.from_dir(model_dir)
    ref = transformers.AutoTokenizer.from_pretrained(model_dir)
    mismatches = []
    for text in texts:
        expected = ref(text)
        got = ours.encode(text)
        if (
            got.ids != expected["input_ids"]
            or got.type_ids != expected["token_type_ids"]
            or got.attention_mask != expected["attention_mask"]
        ):
            mismatches.append(text)
    agree = 1 - len(mismatches) / len(texts)
    detail = f"first mismatch: {mismatches[0][:80]!r}" if mismatches else ""
    return Check(
        name="tokenizer ids vs transformers fast tokenizer",
        measured=f"{agree:.4%} identical of {len(texts)}",
        threshold="100%",
        passed=not mismatches,
        detail=detail,
    )


def check_encoder(
    model_dir: str,
    backend: str,
    texts: Sequence[str],
    reference: np.ndarray,
    thresholds: Thresholds,
) -> Check:
    """Our encoder's vectors against sentence-transformers': fp32 backends within float rounding
    (`FP32_MIN_COSINE`), int8 within the cosine `thresholds` it is served under."""
    from semsearch.encoder.onnx.accuracy import AccuracyReportError
    from semsearch.service.encoders import load_configured_embedder

    name = f"encoder [{backend}] vs sentence-transformers ({len(texts)} texts)"
    try:
        embedder = load_configured_embedder(backend=backend, model_dir=Path(model_dir))
    except (OSError, ValueError, AccuracyReportError) as exc:  # missing or refused: a FAIL
        return Check(
            name=name, measured="not loaded", threshold="loads", passed=False, detail=str(exc)
        )
    if embedder.backend != backend:  # auto: judged as the backend it chose
        name = name.replace(f"[{backend}]", f"[{backend} -> {embedder.backend}]")
    ours = embedder.encode(texts, batch_size=32)
    cosines = np.sum(ours * reference, axis=1)  # both L2-normalized
    min_cos, mean_cos = float(np.min(cosines)), float(np.mean(cosines))
    max_diff = float(np.max(np.abs(ours - reference)))
    measured = f"min cosine {min_cos:.7f}, mean {mean_cos:.7f}, max |diff| {max_diff:.2e}"
    if embedder.backend in LOSSY_BACKENDS:
        passed = min_cos >= thresholds.min_cosine and mean_cos >= thresholds.mean_cosine
        threshold_text = f"min cosine >= {thresholds.min_cosine}, mean >= {thresholds.mean_cosine}"
    else:
        passed = min_cos >= FP32_MIN_COSINE
        threshold_text = f"min cosine >= {FP32_MIN_COSINE}"
    if embedder.backend == "torch":
        passed = passed and max_diff <= MAX_ABS_DIFF_TORCH
        threshold_text += f", max |diff| <= {MAX_ABS_DIFF_TORCH}"
    return Check(name=name, measured=measured, threshold=threshold_text, passed=passed)


def format_report(checks: Sequence[Check]) -> str:
    lines = ["| check | measured | threshold | result |", "|---|---|---|---|"]
    for c in checks:
        lines.append(
            f"| {c.name} | {c.measured} | {c.threshold} | {'PASS' if c.passed else 'FAIL'} |"
        )
    lines += [f"- {c.name}: {c.detail}" for c in checks if c.detail]
    return "\n".join(lines)


def write_json(checks: Sequence[Check], path: Path) -> None:
    path.write_text(json.dumps([asdict(c) for c in checks], indent=2))


def run_verify(
    texts: int,
    backends: Sequence[str],
    decoder: bool = True,
    thresholds: Thresholds | None = None,
    gguf: Path | None = None,
) -> list[Check]:
    """Every check on `texts` real texts; `thresholds` (default `Thresholds()`) judge int8;
    `gguf` is the decoder's file (None: the models directory's)."""
    st = reference_module("sentence_transformers")
    from semsearch.encoder.model_files import default_model_dir

    thresholds = thresholds or Thresholds()
    model_dir = str(default_model_dir())
    probe = probe_texts(texts)
    checks = [check_tokenizer(model_dir, probe)]
    reference = st.SentenceTransformer(model_dir, device="cpu").encode(
        probe, batch_size=32, normalize_embeddings=True, convert_to_numpy=True
    )
    for backend in backends:
        checks.append(check_encoder(model_dir, backend, probe, reference, thresholds))
    if decoder:
        checks += check_decoder(probe, gguf)
    return checks


__all__ = ["check_encoder", "check_tokenizer", "format_report", "run_verify", "write_json"]

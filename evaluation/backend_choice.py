"""Which backend `auto` serves: the artifacts that pass the gates, timed on this machine.

Each candidate backend (`encoder.onnx.auto.CANDIDATES`) is loaded as the server loads it, so a
refused int8 report or a missing runtime counts as not eligible, with the reason. The eligible ones
encode the same real texts at batch 32 (the service batches requests), in alternating rounds; the
ranking is by median texts/s, fastest first. Batch-1 speed and load time are recorded beside it.
The result goes to `backend_choice.json` beside the artifacts, which `auto` reads.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from semsearch.encoder.onnx.accuracy import AccuracyReportError, Thresholds
from semsearch.encoder.onnx.artifacts import BACKEND_CHOICE_FILE
from semsearch.encoder.onnx.auto import CANDIDATES, CHOICE_VERSION, cpu_model
from semsearch.evaluation.corpus import real_texts

log = logging.getLogger(__name__)

TEXTS, SHORT_TEXTS, BATCH, ROUNDS = 256, 32, 32, 3


def timing_texts() -> tuple[list[str], list[str]]:
    """Real texts of every length for batch 32, and the shortest of them for batch 1."""
    texts = list(real_texts(TEXTS, seed=31))
    return texts, sorted(texts, key=len)[:SHORT_TEXTS]


def load_candidates(
    artifact_dir: Path, threads: int | None, thresholds: Thresholds
) -> tuple[dict[str, Any], dict[str, float], dict[str, str]]:
    """The candidates that load as the server would load them, their load seconds, and why the
    others did not."""
    from semsearch.encoder import load_embedder
    from semsearch.encoder.onnx.embedder import OnnxOptions

    options = OnnxOptions(artifact_dir=artifact_dir, thresholds=thresholds)
    loaded: dict[str, Any] = {}
    load_s: dict[str, float] = {}
    refused: dict[str, str] = {}
    for backend in CANDIDATES:
        started = time.perf_counter()
        try:
            loaded[backend] = load_embedder(None, backend, threads, options)
        except (ImportError, FileNotFoundError, AccuracyReportError, ValueError) as exc:
            refused[backend] = str(exc)
            log.warning("auto: %s is not eligible: %s", backend, exc)
            continue
        load_s[backend] = time.perf_counter() - started
    return loaded, load_s, refused


def time_candidates(embedders: dict[str, Any], rounds: int = ROUNDS) -> dict[str, dict]:
    """Median texts/s of each embedder at batch 32 and batch 1, rounds alternating."""
    texts, short = timing_texts()
    for emb in embedders.values():  # warm-up: first-call allocations and kernel choices
        emb.encode(texts[:BATCH], batch_size=BATCH)
    batch32: dict[str, list[float]] = {b: [] for b in embedders}
    batch1: dict[str, list[float]] = {b: [] for b in embedders}
    for _ in range(rounds):
        for backend, emb in embedders.items():
            started = time.perf_counter()
            emb.encode(texts, batch_size=BATCH)
            batch32[backend].append(len(texts) / (time.perf_counter() - started))
            started = time.perf_counter()
            for text in short:
                emb.encode([text], batch_size=1)
            batch1[backend].append(len(short) / (time.perf_counter() - started))
    return {
        b: {
            "texts_per_s_batch32": round(statistics.median(batch32[b]), 1),
            "texts_per_s_batch1": round(statistics.median(batch1[b]), 1),
        }
        for b in embedders
    }


def write_backend_choice(
    artifact_dir: Path, threads: int | None, thresholds: Thresholds, rounds: int = ROUNDS
) -> dict[str, Any]:
    """Measure the eligible artifacts in `artifact_dir` and write `backend_choice.json`."""
    loaded, load_s, refused = load_candidates(artifact_dir, threads, thresholds)
    results = time_candidates(loaded, rounds)
    for backend, seconds in load_s.items():
        results[backend]["load_s"] = round(seconds, 2)
    ranking = sorted(results, key=lambda b: -results[b]["texts_per_s_batch32"])
    choice = {
        "version": CHOICE_VERSION,
        "ranking": ranking,
        "results": results,
        "refused": refused,
        "method": (
            f"median of {rounds} alternating rounds: {TEXTS} real texts at batch {BATCH} "
            f"(ranked by this), the {SHORT_TEXTS} shortest at batch 1"
        ),
        "threads": next(iter(loaded.values())).threads if loaded else threads,
        "cpu": cpu_model(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    path = artifact_dir / BACKEND_CHOICE_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(choice, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    log.info("auto: %s (ranking %s) -> %s", ranking[:1], ranking, path)
    return choice


__all__ = ["load_candidates", "time_candidates", "timing_texts", "write_backend_choice"]

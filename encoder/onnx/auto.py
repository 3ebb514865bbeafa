"""Backend `auto`: serve the fastest artifact that passes the accuracy gates on this machine.

`semsearch export` measures every artifact whose figures pass (`evaluation.backend_choice`) and
writes the ranking, fastest first, to `backend_choice.json` beside them. `auto` loads the first
backend of that ranking that loads here: one whose runtime does not import or whose report is
refused (another threshold setting, a replaced file) is skipped, with the reason kept. A backend
the caller prefers (the one an existing collection was built with: its vectors are the only ones
it accepts) is tried first. Without a choice file (artifacts from an older export) the order is
`FALLBACK`.

What was chosen and why is the embedder's `backend_choice` (`/info` publishes it).
"""

from __future__ import annotations

import json
import logging
import platform
from pathlib import Path
from typing import Any

from semsearch.encoder.base import SentenceEmbedder
from semsearch.encoder.onnx.accuracy import AccuracyReportError
from semsearch.encoder.onnx.artifacts import BACKEND_CHOICE_FILE
from semsearch.encoder.onnx.embedder import OnnxOptions, default_artifact_dir

logger = logging.getLogger(__name__)

CHOICE_VERSION = 1
CANDIDATES = ("openvino-int8", "onnx-int8", "openvino", "onnx")  # what the export measures
FALLBACK = ("onnx-int8", "onnx")  # no choice file: the ONNX Runtime artifacts, int8 first


def cpu_model() -> str:
    """This CPU's model name (the choice file records the one it was measured on)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def read_choice(artifact_dir: Path) -> dict[str, Any] | None:
    """The export's measured ranking, or None when there is none (or it is not one we read)."""
    path = artifact_dir / BACKEND_CHOICE_FILE
    if not path.is_file():
        return None
    try:
        choice = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        logger.warning("ignoring %s: %s", path, exc)
        return None
    if not isinstance(choice, dict):
        choice = {}
    ranking = choice.get("ranking")
    if choice.get("version") != CHOICE_VERSION or not isinstance(ranking, list):
        logger.warning("ignoring %s: not a version-%d choice file", path, CHOICE_VERSION)
        return None
    choice["ranking"] = [b for b in ranking if b in CANDIDATES]
    return choice


def load_auto(
    model_dir: str | Path | None = None,
    threads: int | None = None,
    options: OnnxOptions | None = None,
    prefer: str | None = None,
) -> SentenceEmbedder:
    """The first backend of the measured ranking (`prefer` first) that loads here."""
    from semsearch.encoder import load_embedder

    options = options or OnnxOptions()
    artifact_dir = Path(options.artifact_dir or default_artifact_dir())
    choice = read_choice(artifact_dir)
    order = list(choice["ranking"]) if choice else list(FALLBACK)
    if prefer in CANDIDATES:
        order = [prefer] + [b for b in order if b != prefer]
    skipped: dict[str, str] = {}
    for backend in order:
        try:
            embedder = load_embedder(model_dir, backend, threads, options)
        except (ImportError, FileNotFoundError, AccuracyReportError, ValueError) as exc:
            skipped[backend] = str(exc)
            logger.info("auto: skipping %s: %s", backend, exc)
            continue
        embedder.backend_choice = describe(backend, choice, prefer, skipped)
        logger.info("auto: serving %s (%s)", backend, embedder.backend_choice["reason"])
        return embedder
    detail = "; ".join(f"{b}: {why}" for b, why in skipped.items())
    raise RuntimeError(f"backend auto: no backend loads ({detail})")


def describe(
    backend: str, choice: dict[str, Any] | None, prefer: str | None, skipped: dict[str, str]
) -> dict[str, Any]:
    """What `/info` says about the choice: which backend, why, and the export's measurements."""
    if backend == prefer:
        reason = "the backend the existing collection was built with (it accepts only its vectors)"
    elif choice is None:
        reason = f"no {BACKEND_CHOICE_FILE} beside the artifacts: the default order {FALLBACK}"
    elif choice["ranking"] and backend == choice["ranking"][0]:
        reason = "the fastest artifact within the accuracy gates, as measured at export"
    else:
        reason = "the fastest measured artifact that loads here"
    info: dict[str, Any] = {"requested": "auto", "backend": backend, "reason": reason}
    if skipped:
        info["skipped"] = skipped
    if choice is not None:
        info["measured"] = {
            k: choice[k] for k in ("ranking", "results", "method", "cpu", "threads") if k in choice
        }
        if choice.get("cpu") not in (None, cpu_model()):
            info["warning"] = (
                f"measured on another CPU ({choice['cpu']}); re-run `semsearch export` here to "
                "measure this one"
            )
    return info


__all__ = ["CANDIDATES", "CHOICE_VERSION", "FALLBACK", "cpu_model", "load_auto", "read_choice"]

"""`OpenVinoEmbedder`: ONNX artifacts run by OpenVINO's CPU plugin.

Same artifacts directory, same contract as `OnnxEmbedder`; only the runtime differs:
- backend `openvino` runs the plain fp32 export (`model.onnx`). `precision` "f32" (the default) is
  exact; "bf16" (`INFERENCE_PRECISION_HINT`, refused on a CPU without it) stays well inside the
  int8 gates (`Thresholds`; tests/conformance/test_openvino_conformance.py) but measured slower
  than f32 on this project's AVX512_BF16 CPU without AMX (docs/benchmarks.md).
- backend `openvino-int8` runs NNCF's static int8 artifact (`encoder.onnx.nncf_quantize`), its
  float parts in f32 (what its accuracy report measured), and is served only when that report
  meets the thresholds, as `onnx-int8` is.
The precision is part of the fingerprint: bf16 vectors are not f32's.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from semsearch.encoder.base import SentenceEmbedder, check_threads
from semsearch.encoder.model_files import ModelFiles
from semsearch.encoder.onnx.artifacts import (
    FP32_FILE,
    OPENVINO_INT8_FILE,
    OUTPUT_NAME,
    POOLED_NAME,
)
from semsearch.encoder.onnx.embedder import (
    OnnxOptions,
    artifact_fingerprint,
    graph_feeds,
    open_artifact,
)

logger = logging.getLogger(__name__)

OPENVINO_HINT = "the openvino backends need OpenVINO (a semsearch dependency): pip install openvino"
PRECISIONS = ("bf16", "f32")
ARTIFACT_FILES = {"openvino": FP32_FILE, "openvino-int8": OPENVINO_INT8_FILE}


def has_bf16(core: Any) -> bool:
    """Whether the CPU computes bf16 natively (emulated bf16 would only be slower)."""
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVinoEmbedder(SentenceEmbedder):
    """Sentence vectors from an ONNX artifact on OpenVINO (pooling and normalization inside)."""

    def __init__(
        self,
        files: ModelFiles,
        threads: int | None = None,
        options: OnnxOptions | None = None,
        backend: str = "openvino",
        artifact: Path | None = None,
        check_accuracy: bool = True,
    ) -> None:
        """Runs as `options` say: where the artifacts are, and `openvino_precision`. `artifact`
        overrides the backend's file in the artifact dir; `check_accuracy=False` skips the int8
        report check (only for `semsearch export`, which is about to write it)."""
        try:
            import openvino as ov
        except ImportError as e:
            raise ImportError(OPENVINO_HINT) from e
        if backend not in ARTIFACT_FILES:
            raise ValueError(f"backend must be one of {sorted(ARTIFACT_FILES)}, got {backend!r}")
        options = options or OnnxOptions()
        precision = options.openvino_precision
        if precision not in PRECISIONS:
            raise ValueError(f"openvino precision must be one of {PRECISIONS}, got {precision!r}")
        if backend == "openvino-int8" and precision != "f32":
            raise ValueError(
                "backend openvino-int8 runs its float parts in f32, as its accuracy report "
                f"measured them; openvino precision {precision!r} applies to backend openvino only"
            )
        check_threads(threads)
        started = time.perf_counter()
        self.backend = backend
        self.files = files
        served = open_artifact(
            files,
            options,
            ARTIFACT_FILES[backend],
            artifact,
            check_accuracy=check_accuracy and backend == "openvino-int8",
        )
        self.served = served
        self.artifact, self.artifact_sha256 = served.path, served.sha256
        self.manifest, self.report = served.manifest, served.report
        self.tokenizer = served.tokenizer
        core = ov.Core()
        self.precision = precision
        if self.precision == "bf16" and not has_bf16(core):
            raise ValueError("openvino precision bf16 needs a CPU with native bf16 (AVX512_BF16)")
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": self.precision,
            "PERFORMANCE_HINT": "LATENCY",  # one request at a time uses every thread
        }
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(core.read_model(str(self.artifact)), "CPU", config)
        self.threads = int(self.compiled.get_property("INFERENCE_NUM_THREADS"))
        # An infer request is not thread-safe; one per thread that encodes, made on first use.
        self._local = threading.local()
        logger.info(
            "loaded %s encoder %s (%s) in %.2fs (%d threads)",
            backend,
            self.artifact,
            self.precision,
            time.perf_counter() - started,
            self.threads,
        )

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this encoder's vectors: two fingerprints equal -> same vectors."""
        quantization = "int8-static" if self.backend == "openvino-int8" else None
        return artifact_fingerprint(self, self.served, quantization, precision=self.precision)

    def _embed(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        token_type_ids: np.ndarray | None,
        normalize: bool,
    ) -> np.ndarray:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        # share_inputs: OpenVINO reads the arrays in place (graph_feeds made them contiguous)
        results = request.infer(
            graph_feeds(input_ids, attention_mask, token_type_ids), share_inputs=True
        )
        output = self.compiled.output(OUTPUT_NAME if normalize else POOLED_NAME)
        return np.array(results[output], dtype=np.float32)  # a copy: the request reuses its buffer

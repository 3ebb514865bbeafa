"""Loading the encoder as the settings say: where flags, SEMSEARCH_* and defaults meet it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from semsearch.service.settings import Settings

if TYPE_CHECKING:
    from semsearch.encoder.base import SentenceEmbedder


def load_configured_embedder(
    settings: Settings | None = None,
    *,
    backend: str | None = None,
    model_dir: Path | None = None,
    threads: int | None = None,
) -> SentenceEmbedder:
    """`encoder.load_embedder` with the settings' backend, model dir, threads and ONNX options;
    arguments that are not None (command-line flags) override the settings."""
    from semsearch.encoder import load_embedder

    settings = settings or Settings()
    backend = backend or settings.backend
    return load_embedder(
        model_dir=model_dir or settings.model_dir,
        backend=backend,
        threads=threads or settings.threads,
        onnx_options=settings.onnx_options() if backend != "torch" else None,
    )

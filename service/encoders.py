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
    arguments that are not None (command-line flags) override the settings. Backend `auto`
    prefers the backend the local collection in `settings.index_dir` was built with."""
    from semsearch.encoder import load_embedder

    settings = settings or Settings()
    backend = backend or settings.backend
    return load_embedder(
        model_dir=model_dir or settings.model_dir,
        backend=backend,
        threads=threads or settings.threads,
        onnx_options=settings.onnx_options() if backend != "torch" else None,
        prefer=(
            collection_backend(settings.index_dir)
            if backend == "auto" and settings.store == "local"
            else None
        ),
    )


def collection_backend(index_dir: Path) -> str | None:
    """The encoder backend an existing collection was built with (None: no collection yet, or
    one without a recorded encoder)."""
    from semsearch.index.errors import FormatError
    from semsearch.index.persistence import read_manifest

    try:
        manifest = read_manifest(index_dir)
    except (OSError, FormatError):
        return None  # opening the collection reports what is wrong with it
    fingerprint = manifest.encoder_fingerprint if manifest else None
    return fingerprint.get("backend") if isinstance(fingerprint, dict) else None

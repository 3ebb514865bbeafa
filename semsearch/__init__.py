"""semsearch: self-hosted embeddings, vector search and retrieval-augmented generation.

One import package over the repository's folders (pyproject maps each one in):

    semsearch.encoder     the from-scratch BERT sentence encoder, its ONNX export and runtime
    semsearch.index       FAISS vectors + SQLite documents; semsearch.index.ingest builds them
    semsearch.decoder     the from-scratch Llama decoder (SmolLM2 from its GGUF file)
    semsearch.service     the HTTP service (FastAPI)
    semsearch.cli         the `semsearch` command line
    semsearch.evaluation  accuracy measurement (probe texts, verify); never imported by the server
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("semsearch")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

"""Test-wide setup: model files come from the repository's `models/` (what `make setup` builds),
tests are marked by their folder (`unit`, `conformance`, `integration`), and the models are shared.

Models: `fake_embedder` (tests/fakes.py: the real tokenizer and model files, hashed vectors) for
tests whose subject is not the encoder's model; `real_embedder` and `real_generator`, loaded once a
session, for tests that compare with the reference or where the model's cost is the point.
`make_client(embedder, generator=None, **settings)` opens an app over them on a fresh collection.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]

# `make` sets these too; pytest run by hand gets the same files. No test writes to the data dir:
# collections live in tmp_path.
os.environ.setdefault("SEMSEARCH_MODELS_DIR", str(REPO / "models"))
os.environ.setdefault("SEMSEARCH_DATA_DIR", str(REPO / "data"))

FOLDERS = ("unit", "conformance", "integration")
_FOLDER_MARKS = {name: getattr(pytest.mark, name) for name in FOLDERS}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(str(item.path)).relative_to(REPO / "tests").parts[0]
        if folder in _FOLDER_MARKS:
            item.add_marker(_FOLDER_MARKS[folder])


# --- models: loaded once a session, only by the tests that ask ---------------------------------
# Sharing is safe: the service only reads them (inference), and every app's engines are closed
# when its test ends.


@pytest.fixture(scope="session")
def fake_embedder() -> Any:
    """The service's view of an encoder, without the model: see tests/fakes.py."""
    from fakes import TokenHashEmbedder

    return TokenHashEmbedder()


@pytest.fixture(scope="session")
def real_embedder() -> Any:
    """The from-scratch BERT on torch: what sentence-transformers' vectors are compared with."""
    from semsearch.encoder import load_embedder

    return load_embedder(backend="torch")


@pytest.fixture(scope="session")
def real_generator() -> Any:
    """The from-scratch Llama over the GGUF in models/ (no fake decoder exists)."""
    from semsearch.decoder import load_generator

    return load_generator()


@pytest.fixture
def make_client(tmp_path: Path) -> Callable[..., AbstractContextManager[Any]]:
    """`with make_client(embedder, generator=None, **settings) as client:` a TestClient (lifespan
    run) over these models and a collection in tmp_path/index; the decoder is off without a
    generator. `settings` are `Settings` fields; `raise_server_exceptions=False` shows the 500."""
    from apps import app_client

    def make(embedder: Any, generator: Any | None = None, **settings: Any):
        settings.setdefault("index_dir", tmp_path / "index")
        return app_client(embedder, generator, **settings)

    return make

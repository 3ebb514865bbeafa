"""A real uvicorn over the served encoder (`auto`) and the real decoder, behind an API key: what
the client tests (the openai SDK, LangChain, LlamaIndex, huggingface_hub) talk to, unpatched."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from apps import build_app
from serving import CLIENT_KEY, serve_in_thread


@pytest.fixture(scope="session")
def served_embedder() -> Any:
    from semsearch.encoder import load_embedder

    return load_embedder(backend="auto")


@pytest.fixture(scope="module")
def client_server(served_embedder, real_generator, tmp_path_factory) -> Iterator[str]:
    """The base URL (no trailing slash) of the service; requests need `CLIENT_KEY`."""
    index_dir = tmp_path_factory.mktemp("index")
    app = build_app(served_embedder, real_generator, index_dir=index_dir, api_key=CLIENT_KEY)
    with serve_in_thread(app) as url:
        yield url

"""Apps over models the tests already loaded: `create_app(settings, embedder=..., generator=...)`
with the decoder off unless a generator is given, so no app loads a model of its own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from semsearch.service.app import create_app
from semsearch.service.settings import Settings


def build_app(embedder: Any, generator: Any | None = None, **settings: Any) -> FastAPI:
    """The service over these models; `settings` are `Settings` fields (`index_dir`, limits...)."""
    if generator is None:
        settings = {"decoder": "off", **settings}
    return create_app(Settings(**settings), embedder=embedder, generator=generator)


@contextmanager
def app_client(
    embedder: Any,
    generator: Any | None = None,
    *,
    raise_server_exceptions: bool = True,
    **settings: Any,
) -> Iterator[TestClient]:
    """A client of `build_app(...)` whose lifespan has run (its threads stop on exit).

    raise_server_exceptions=False: see the 500 a client sees, not the exception behind it.
    """
    app = build_app(embedder, generator, **settings)
    with TestClient(app, raise_server_exceptions=raise_server_exceptions) as client:
        yield client

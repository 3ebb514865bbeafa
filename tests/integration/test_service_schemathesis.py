"""schemathesis against the real app over real HTTP: every operation of `/openapi.json`,
generation included, with and without the API key, with valid and invalid inputs. No answer may
be a 500 or break the schema the app publishes, and without the key every route but the probes
(`/health`, `/ready`) answers 401.

The example budget is small (the decoder runs for real, on 2 cores); the server's own limits are
set low so that what schemathesis asks for stays cheap to answer. The encoder is the hashing
embedder (tests/fakes.py: the real tokenizer and limits): the contract, not the vectors, is tested.
"""

from __future__ import annotations

from collections.abc import Iterator

import hypothesis
import pytest
import schemathesis
from apps import build_app
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from serving import serve_in_thread

from semsearch.service.app import create_app
from semsearch.service.settings import Settings

KEY = "schemathesis-key"
OPEN_WITHOUT_KEY = {"/health", "/ready"}
CHECKS = [not_a_server_error, response_schema_conformance]


@pytest.fixture(scope="module")
def base_url(tmp_path_factory, fake_embedder, real_generator) -> Iterator[str]:
    app = build_app(
        fake_embedder,
        real_generator,
        index_dir=tmp_path_factory.mktemp("index"),
        api_key=KEY,
        max_new_tokens=4,
        max_prompt_chars=2_000,
        max_input_chars=2_000,
        max_concurrent_generations=4,
    )
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture(scope="module")
def api_schema(base_url: str):
    return schemathesis.openapi.from_url(f"{base_url}/openapi.json")


# Every operation the app publishes (an app that loads nothing: only its routes are read), and
# those that take a body, for which invalid input can be generated (any string is a valid id).
_PATHS = create_app(Settings(decoder="off")).openapi()["paths"]
OPERATIONS = [(method.upper(), path) for path, methods in _PATHS.items() for method in methods]
WITH_INPUT = [
    (method.upper(), path)
    for path, methods in _PATHS.items()
    for method, spec in methods.items()
    if "requestBody" in spec
]
FUZZ = settings(
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same examples every run: a CI failure reproduces locally
    database=None,
)


def fuzz(api_schema, base_url: str, method: str, path: str, mode: GenerationMode) -> None:
    operation = api_schema[path][method]

    @settings(FUZZ, max_examples=10)
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def check(case) -> None:
        case.call_and_validate(
            base_url=base_url, headers={"Authorization": f"Bearer {KEY}"}, checks=CHECKS
        )

    check()


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_valid_input_never_fails_or_breaks_the_schema(api_schema, base_url, method, path):
    fuzz(api_schema, base_url, method, path, GenerationMode.POSITIVE)


@pytest.mark.parametrize(("method", "path"), WITH_INPUT)
def test_invalid_input_is_a_4xx_in_the_schema(api_schema, base_url, method, path):
    fuzz(api_schema, base_url, method, path, GenerationMode.NEGATIVE)


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_without_the_key_only_the_probes_answer(api_schema, base_url, method, path):
    operation = api_schema[path][method]

    @settings(FUZZ, max_examples=3)
    @hypothesis.given(case=operation.as_strategy())
    def check(case) -> None:
        response = case.call(base_url=base_url)
        if path in OPEN_WITHOUT_KEY:
            assert response.status_code in (200, 503)
        else:
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["www-authenticate"] == ["Bearer"]

    check()

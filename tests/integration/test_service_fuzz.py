"""Property test: no request body, however malformed, makes a route answer 500.

Bodies are drawn from each route's own fields (taken from the app's OpenAPI schema, so new fields
are covered automatically) with values of every JSON type, plus unknown keys and non-objects.
Every answer must be a documented status with the right error envelope. The encoder is the
hashing embedder (tests/fakes.py: the real tokenizer and limits): no answer here depends on vectors.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from apps import app_client
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
DOCUMENTED = {200, 400, 401, 404, 413, 422, 429, 503}  # 400: /v1/* only (OpenAI's 422)
EMBEDDING_ROUTES = ["/embed", "/v1/embeddings", "/tokenize", "/decode", "/documents", "/search"]


@pytest.fixture(scope="module")
def client(tmp_path_factory, fake_embedder) -> Iterator[TestClient]:
    with app_client(fake_embedder, index_dir=tmp_path_factory.mktemp("index")) as c:
        yield c


def route_fields(client: TestClient, path: str) -> list[str]:
    schema = client.get("/openapi.json").json()
    ref = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    name = ref["$ref"].rsplit("/", 1)[-1]
    return list(schema["components"]["schemas"][name]["properties"])


@st.composite
def bodies(draw, fields: list[str]):
    kind = draw(st.sampled_from(["fields", "fields", "fields", "any"]))
    if kind == "any":
        return draw(JSON_VALUES)
    chosen = draw(st.lists(st.sampled_from(fields), unique=True, max_size=len(fields)))
    body = {f: draw(JSON_VALUES) for f in chosen}
    if draw(st.booleans()):
        body[draw(st.text(min_size=1, max_size=6))] = draw(JSON_SCALARS)
    return body


@pytest.mark.parametrize("path", EMBEDDING_ROUTES)
def test_no_body_makes_a_route_fail_with_500(client, path):
    fields = route_fields(client, path)
    before = client.get("/info").json()["index"]["count"]

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(body=bodies(fields))
    def check(body) -> None:
        response = client.post(path, json=body)
        assert response.status_code in DOCUMENTED, (body, response.status_code, response.text)
        # Each dialect its own status for a malformed body: OpenAI's 400, TEI's and ours 422.
        assert response.status_code != (422 if path.startswith("/v1/") else 400), response.text
        if response.status_code != 200:
            error = response.json()["error"]
            if path.startswith("/v1/"):
                assert set(error) == {"message", "type", "param", "code"}
            else:
                assert isinstance(error, str) and error

    check()
    if path != "/documents":  # the only route here that may legitimately write
        assert client.get("/info").json()["index"]["count"] == before

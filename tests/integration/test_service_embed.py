"""The service's embedding and operations routes.

Vectors are compared with sentence-transformers (and tokens with the fast tokenizer) on the real
model; validation, limits, errors, the API key and metrics run on the hashing embedder
(tests/fakes.py), which shares the real tokenizer, dim and max length but has no model.
"""

from __future__ import annotations

import asyncio
import base64

import numpy as np
import pytest
from fastapi.testclient import TestClient

from semsearch.encoder.onnx.accuracy import FP32_MIN_COSINE
from semsearch.service.app import create_app
from semsearch.service.settings import Settings

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Vector search finds documents by meaning, not by keywords.",
    "Ünïcödé àccents and 日本語 text",
    "short",
]


@pytest.fixture(autouse=True)
def _isolated_index(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMSEARCH_INDEX_DIR", str(tmp_path / "index"))


@pytest.fixture(scope="module")
def reference_vectors():
    from sentence_transformers import SentenceTransformer

    from semsearch.encoder.model_files import default_model_dir

    model = SentenceTransformer(str(default_model_dir()), device="cpu")
    return model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)


def assert_native_error(response, status: int, kind: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error_type"] == kind
    assert isinstance(body["error"], str) and body["error"]


def test_ready_is_503_until_the_models_are_loaded_while_health_is_200():
    # No lifespan run and no embedder given: nothing has started loading.
    client = TestClient(create_app(Settings()))
    response = client.get("/ready")
    assert response.status_code == 503
    assert response.json()["status"] == "loading"
    assert client.get("/health").status_code == 200  # alive: no reason to restart it
    assert_native_error(client.post("/embed", json={"inputs": "x"}), 503, "Unhealthy")


def test_health_and_info_when_ready(make_client, real_embedder):
    with make_client(real_embedder) as client:
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/ready").json() == {"status": "ok"}
        info = client.get("/info").json()
        assert info["encoder"]["dim"] == 384
        assert info["encoder"]["max_length"] == 256
        assert info["encoder"]["backend"] == "torch"
        assert len(info["encoder"]["weights_sha256"]) == 64
        assert info["limits"]["max_client_batch_size"] == 32


def test_embed_matches_sentence_transformers_in_input_order(
    make_client, real_embedder, reference_vectors
):
    with make_client(real_embedder) as client:
        response = client.post("/embed", json={"inputs": TEXTS})
        assert response.status_code == 200, response.text
        vectors = np.asarray(response.json(), dtype=np.float32)
        assert vectors.shape == (len(TEXTS), 384)
        cosines = np.sum(vectors * reference_vectors, axis=1)
        assert cosines.min() >= FP32_MIN_COSINE, cosines


def test_embed_single_string_equals_the_batched_one(make_client, real_embedder):
    with make_client(real_embedder) as client:
        batch = np.asarray(client.post("/embed", json={"inputs": TEXTS}).json())
        for i, text in enumerate(TEXTS):
            single = np.asarray(client.post("/embed", json={"inputs": text}).json())
            assert single.shape == (1, 384)
            np.testing.assert_allclose(single[0], batch[i], atol=1e-5)


def test_embed_without_normalization_keeps_the_direction(make_client, real_embedder):
    with make_client(real_embedder) as client:
        raw = np.asarray(client.post("/embed", json={"inputs": TEXTS, "normalize": False}).json())
        unit = np.asarray(client.post("/embed", json={"inputs": TEXTS}).json())
        norms = np.linalg.norm(raw, axis=1)
        assert np.all(np.abs(norms - 1) > 1e-3), norms
        np.testing.assert_allclose(raw / norms[:, None], unit, atol=1e-5)


def test_embed_truncation(make_client, fake_embedder):
    with make_client(fake_embedder) as client:
        long_text = "semantic search " * 400  # far over 256 tokens
        assert client.post("/embed", json={"inputs": long_text}).status_code == 200
        refused = client.post("/embed", json={"inputs": long_text, "truncate": False})
        assert_native_error(refused, 413, "Validation")
        assert "256" in refused.json()["error"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"inputs": []}, 422),
        ({"inputs": ["x"] * 33}, 413),
        ({"inputs": 5}, 422),
        ({"inputs": [1.5, 2]}, 422),  # token ids are integers (test_service_tei.py)
        ({"inputs": [True]}, 422),
        ({}, 422),
        ({"inputs": "x", "unknown": 1}, 422),
    ],
)
def test_embed_bad_input(make_client, fake_embedder, body, status):
    with make_client(fake_embedder) as client:
        assert_native_error(client.post("/embed", json=body), status, "Validation")


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b'{"inputs": "x", "n": ' + b"9" * 5000 + b"}",  # past Python's 4,300 digits
        b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # past the recursion limit
    ],
    ids=["syntax", "huge-integer", "deep-nesting"],
)
def test_malformed_json_is_a_validation_error(make_client, fake_embedder, raw):
    with make_client(fake_embedder) as client:
        response = client.post("/embed", content=raw, headers={"content-type": "application/json"})
        assert client.post("/search", content=raw).status_code == 422
    assert_native_error(response, 422, "Validation")


def test_openai_embeddings_float_and_base64(make_client, real_embedder, reference_vectors):
    with make_client(real_embedder) as client:
        body = client.post("/v1/embeddings", json={"input": TEXTS, "model": "minilm"}).json()
        assert body["object"] == "list"
        assert body["model"] == "semsearch-encoder"  # the served model, not the request's name
        assert [d["index"] for d in body["data"]] == list(range(len(TEXTS)))
        floats = np.asarray([d["embedding"] for d in body["data"]], dtype=np.float32)
        assert np.sum(floats * reference_vectors, axis=1).min() >= FP32_MIN_COSINE
        expected_tokens = sum(len(real_embedder.tokenizer.encode(t)) for t in TEXTS)
        assert body["usage"] == {"prompt_tokens": expected_tokens, "total_tokens": expected_tokens}

        b64 = client.post(
            "/v1/embeddings", json={"input": TEXTS, "encoding_format": "base64"}
        ).json()
        decoded = np.stack(
            [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in b64["data"]]
        )
        np.testing.assert_array_equal(decoded, floats)


def test_openai_errors_use_the_openai_envelope(make_client, fake_embedder):
    with make_client(fake_embedder) as client:
        response = client.post("/v1/embeddings", json={"input": []})
    assert response.status_code == 400  # OpenAI's status for a malformed request
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"


def test_api_key_guards_every_route_but_the_probes(make_client, fake_embedder):
    with make_client(fake_embedder, api_key="s3cret") as client:
        assert client.get("/health").status_code == 200
        assert client.get("/ready").status_code == 200
        assert_native_error(client.post("/embed", json={"inputs": "x"}), 401, "Unauthorized")
        assert_native_error(client.get("/info"), 401, "Unauthorized")
        wrong = {"Authorization": "Bearer nope"}
        assert_native_error(
            client.post("/embed", json={"inputs": "x"}, headers=wrong), 401, "Unauthorized"
        )
        unauthorized_v1 = client.post("/v1/embeddings", json={"input": "x"})
        assert unauthorized_v1.status_code == 401
        assert unauthorized_v1.json()["error"]["type"] == "authentication_error"
        good = {"Authorization": "Bearer s3cret"}
        assert client.post("/embed", json={"inputs": "x"}, headers=good).status_code == 200


def test_concurrent_requests_get_exactly_what_single_requests_get(real_embedder):
    """Dynamic batching packs concurrent requests together; it must change no vector."""
    import httpx

    texts = [f"request {i}: " + "word " * (i * 7 % 60) for i in range(24)]
    expected = real_embedder.encode(texts)

    async def fire(app) -> list[np.ndarray]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            responses = await asyncio.gather(
                *(client.post("/embed", json={"inputs": text}) for text in texts)
            )
        return [np.asarray(r.json())[0] for r in responses]

    app = create_app(Settings(max_wait_ms=20, decoder="off"), embedder=real_embedder)
    try:
        got = np.stack(asyncio.run(fire(app)))
    finally:
        app.state.models.close()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_metrics_count_requests_batches_and_tokens(make_client, fake_embedder):
    with make_client(fake_embedder) as client:
        client.post("/embed", json={"inputs": TEXTS})
        client.post("/embed", json={"inputs": []})
        text = client.get("/metrics").text
    assert 'semsearch_requests_total{route="/embed",status="200"} 1.0' in text
    assert 'semsearch_requests_total{route="/embed",status="422"} 1.0' in text
    assert 'semsearch_request_duration_seconds_count{route="/embed"}' in text
    assert "semsearch_batch_size_count 1.0" in text
    expected_tokens = sum(len(fake_embedder.tokenizer.encode(t)) for t in TEXTS)
    assert f'semsearch_tokens_total{{model="encoder"}} {float(expected_tokens)}' in text
    assert "semsearch_queue_depth 0.0" in text


def test_tokenize_matches_the_fast_tokenizer_with_offsets(make_client, real_embedder):
    from transformers import AutoTokenizer

    from semsearch.encoder.model_files import default_model_dir

    reference = AutoTokenizer.from_pretrained(str(default_model_dir()))
    texts = ["Héllo, wörld! 日本語", "[CLS] literal and \u200bzero-width", "tokenization"]
    with make_client(real_embedder) as client:
        body = client.post("/tokenize", json={"inputs": texts}).json()
        bare = client.post("/tokenize", json={"inputs": "x y", "add_special_tokens": False})
    for text, tokens in zip(texts, body, strict=True):
        expected = reference(text, return_offsets_mapping=True)
        assert [t["id"] for t in tokens] == expected["input_ids"]
        assert tokens[0] == {
            "id": 101,
            "text": "[CLS]",
            "special": True,
            "start": None,
            "stop": None,
        }
        for token, (start, stop) in zip(
            tokens[1:-1], expected["offset_mapping"][1:-1], strict=True
        ):
            assert (token["start"], token["stop"]) == (start, stop)
            assert token["text"] == text[start:stop]
    assert [t["text"] for t in bare.json()[0]] == ["x", "y"]


def test_oversized_bodies_are_refused_before_parsing(make_client, fake_embedder):
    with make_client(fake_embedder, max_body_bytes=2048) as client:
        big = {"inputs": ["x" * 3000]}
        assert_native_error(client.post("/embed", json=big), 413, "Validation")
        v1 = client.post("/v1/embeddings", json={"input": "y" * 3000})
        assert v1.status_code == 413 and "message" in v1.json()["error"]

        def chunks():  # no Content-Length: the limit is checked on the bytes received
            yield b'{"inputs": "'
            for _ in range(10):
                yield b"z" * 500
            yield b'"}'

        chunked = client.post(
            "/embed", content=chunks(), headers={"content-type": "application/json"}
        )
        assert_native_error(chunked, 413, "Validation")
        assert client.post("/embed", json={"inputs": "small"}).status_code == 200

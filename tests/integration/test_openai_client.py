"""The `openai` Python SDK, unpatched, against the service under a real uvicorn: embeddings (float
and the SDK's default base64), the model list, completions, chat, chat streaming, and what cannot
be honoured refused as the SDK's own exception types (400 -> BadRequestError naming the field).

The server runs the served encoder (`auto`) and the real decoder; nothing here is faked."""

from __future__ import annotations

import numpy as np
import openai
import pytest
from serving import CLIENT_KEY as KEY

ENCODER, DECODER = "semsearch-encoder", "SmolLM2-135M-Instruct"  # the served models' ids
TEXTS = ["what is vector search?", "FAISS searches dense vectors."]


@pytest.fixture(scope="module")
def server(client_server):
    return client_server


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)


def test_embeddings_float_and_base64_are_the_served_vectors(client, served_embedder):
    expected = served_embedder.encode(TEXTS)
    for encoding in ("float", "base64"):  # the SDK asks for base64 by default and decodes it
        kwargs = {"encoding_format": "float"} if encoding == "float" else {}
        result = client.embeddings.create(model="anything", input=TEXTS, **kwargs)
        got = np.array([item.embedding for item in result.data], dtype=np.float32)
        np.testing.assert_allclose(got, expected, atol=1e-6)
        assert result.model == ENCODER  # the served model, not the request's name
        assert result.usage.prompt_tokens > 0


def test_models_lists_both_with_their_context(client, real_generator):
    cards = {m.id: m for m in client.models.list().data}
    assert set(cards) == {ENCODER, DECODER}
    assert cards[ENCODER].context_length == 256 and cards[ENCODER].kind == "embedding"
    assert cards[DECODER].context_length == real_generator.context_length
    assert client.models.retrieve(DECODER).kind == "generation"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4")


def test_completions_and_chat(client):
    done = client.completions.create(
        model="x", prompt="The capital of France is", max_tokens=8, temperature=0
    )
    assert done.choices[0].text and done.model == DECODER
    assert done.usage.completion_tokens <= 8
    chat = client.chat.completions.create(
        model="x",
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=8,
        temperature=0,
    )
    assert chat.choices[0].message.role == "assistant" and chat.choices[0].message.content
    assert chat.choices[0].finish_reason in ("stop", "length")


def test_chat_streaming_equals_the_whole_answer(client):
    request = dict(
        model="x", messages=[{"role": "user", "content": "Name a colour."}], max_tokens=12
    )
    whole = client.chat.completions.create(temperature=0, **request).choices[0].message.content
    stream = client.chat.completions.create(
        temperature=0, stream=True, stream_options={"include_usage": True}, **request
    )
    pieces, usage = [], None
    for chunk in stream:
        pieces += [c.delta.content or "" for c in chunk.choices]
        usage = chunk.usage or usage
    assert "".join(pieces) == whole and usage.completion_tokens > 0


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (dict(n=2), "n"),
        (dict(tools=[{"type": "function", "function": {"name": "f"}}]), "tools"),
        (dict(response_format={"type": "json_object"}), "response_format"),
        (dict(logprobs=True), "logprobs"),
        (dict(frequency_penalty=0.5), "frequency_penalty"),
    ],
)
def test_what_cannot_be_honoured_is_a_bad_request_naming_the_field(client, call, field):
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="x", messages=messages, max_tokens=2, **call)
    assert raised.value.status_code == 400
    assert raised.value.body["param"] == field and field in raised.value.body["message"]


def test_neutral_values_of_those_fields_are_accepted(client):
    chat = client.chat.completions.create(
        model="x",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=2,
        n=1,
        logprobs=False,
        response_format={"type": "text"},
        frequency_penalty=0,
        user="someone",
    )
    assert len(chat.choices) == 1


def test_dimensions_other_than_the_model_are_refused(client):
    assert len(client.embeddings.create(model="x", input="a", dimensions=384).data) == 1
    with pytest.raises(openai.BadRequestError, match="384 dimensions"):
        client.embeddings.create(model="x", input="a", dimensions=64)


def test_a_wrong_key_is_the_sdk_authentication_error(server):
    wrong = openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()


def test_token_ids_are_refused_with_the_setting_to_change(client):
    for ids in ([1996, 3899], [[1996, 3899], [2054]]):
        with pytest.raises(openai.BadRequestError, match="check_embedding_ctx_length"):
            client.embeddings.create(model="x", input=ids)

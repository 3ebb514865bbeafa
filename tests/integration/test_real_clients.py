"""LangChain, LlamaIndex and huggingface_hub, from PyPI and unpatched, against the service under a
real uvicorn (tests/integration/conftest.py): only the base URL and the key change, plus the one
documented LangChain setting (`check_embedding_ctx_length=False`: send texts, not tiktoken ids)."""

from __future__ import annotations

import numpy as np
from serving import CLIENT_KEY

TEXTS = ["what is vector search?", "FAISS searches dense vectors."]


def test_langchain_openai_embeddings(client_server, served_embedder):
    from langchain_openai import OpenAIEmbeddings

    embeddings = OpenAIEmbeddings(
        model="semsearch-encoder",
        base_url=f"{client_server}/v1",
        api_key=CLIENT_KEY,
        check_embedding_ctx_length=False,
        max_retries=0,
    )
    expected = served_embedder.encode(TEXTS)
    np.testing.assert_allclose(np.array(embeddings.embed_documents(TEXTS)), expected, atol=1e-6)
    np.testing.assert_allclose(np.array(embeddings.embed_query(TEXTS[0])), expected[0], atol=1e-6)


def test_langchain_chat_openai(client_server):
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(
        model="SmolLM2-135M-Instruct",
        base_url=f"{client_server}/v1",
        api_key=CLIENT_KEY,
        max_tokens=8,
        temperature=0,
        max_retries=0,
    )
    answer = chat.invoke("Say hello.")
    assert answer.content and answer.response_metadata["finish_reason"] in ("stop", "length")
    streamed = "".join(chunk.content for chunk in chat.stream("Say hello."))
    assert streamed == answer.content


def test_llama_index_tei_embeddings(client_server, served_embedder):
    from llama_index.embeddings.text_embeddings_inference import TextEmbeddingsInference

    embed = TextEmbeddingsInference(
        model_name="semsearch-encoder", base_url=client_server, auth_token=CLIENT_KEY
    )
    expected = served_embedder.encode(TEXTS)
    batch = np.array(embed.get_text_embedding_batch(TEXTS))
    np.testing.assert_allclose(batch, expected, atol=1e-6)
    query = np.array(embed.get_query_embedding(TEXTS[1]))
    np.testing.assert_allclose(query, expected[1], atol=1e-6)


def test_huggingface_hub_feature_extraction(client_server, served_embedder):
    from huggingface_hub import InferenceClient

    client = InferenceClient(model=f"{client_server}/embed", token=CLIENT_KEY)
    expected = served_embedder.encode(TEXTS)
    one = np.asarray(client.feature_extraction(TEXTS[0]))
    np.testing.assert_allclose(one.reshape(-1), expected[0], atol=1e-6)
    np.testing.assert_allclose(np.asarray(client.feature_extraction(TEXTS)), expected, atol=1e-6)

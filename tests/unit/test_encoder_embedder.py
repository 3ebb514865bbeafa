"""The `Embedder` contract the service and scripts rely on (see shared API.md)."""

from __future__ import annotations

import numpy as np
import pytest

from semsearch.encoder import WordPieceTokenizer, load_embedder

TEXTS = ["The quick brown fox jumps over the lazy dog.", "short", "Ünïcödé àccents and 日本語 text"]


@pytest.fixture(scope="module")
def embedder():
    return load_embedder()


def test_attributes(embedder):
    assert embedder.backend == "torch"
    assert embedder.dim == 384
    assert embedder.max_length == 256
    assert isinstance(embedder.tokenizer, WordPieceTokenizer)


def test_encode_shapes_dtype_and_norm(embedder):
    vecs = embedder.encode(TEXTS)
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-6)
    empty = embedder.encode([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32


def test_input_order_is_kept(embedder):
    forward = embedder.encode(TEXTS)
    backward = embedder.encode(TEXTS[::-1])
    np.testing.assert_allclose(backward[::-1], forward, atol=1e-6, rtol=0)


def test_unnormalized_vectors_are_the_mean_pool(embedder):
    raw = embedder.encode(TEXTS, normalize=False)
    unit = embedder.encode(TEXTS)
    norms = np.linalg.norm(raw, axis=1, keepdims=True)
    assert not np.allclose(norms, 1.0)
    np.testing.assert_allclose(raw / norms, unit, atol=1e-6, rtol=0)


def test_encode_batch_arrays_is_the_core(embedder):
    arrays = embedder.tokenizer.pad(embedder.tokenizer.encode_batch(TEXTS))
    assert arrays["input_ids"].dtype == np.int64
    core = embedder.encode_batch_arrays(
        arrays["input_ids"], arrays["attention_mask"], arrays["token_type_ids"]
    )
    assert core.shape == (3, 384) and core.dtype == np.float32
    np.testing.assert_allclose(core, embedder.encode(TEXTS), atol=1e-6, rtol=0)


def test_encode_batch_arrays_refuses_bad_input(embedder):
    ids = np.array([[101, 2000, 102]], dtype=np.int64)
    mask = np.ones_like(ids)
    with pytest.raises(ValueError, match="attention_mask shape"):
        embedder.encode_batch_arrays(ids, mask[:, :2])
    with pytest.raises(ValueError, match=r"input_ids must lie in \[0, 30522\)"):
        embedder.encode_batch_arrays(ids + 40000, mask)
    with pytest.raises(ValueError, match="2-D integer"):
        embedder.encode_batch_arrays(ids.astype(np.float32), mask)
    with pytest.raises(ValueError, match=r"rows \[0\] have no tokens"):
        embedder.encode_batch_arrays(ids, np.zeros_like(ids))
    with pytest.raises(ValueError, match="max_position_embeddings"):
        long = np.ones((1, 600), dtype=np.int64)
        embedder.encode_batch_arrays(long, np.ones_like(long))


def test_encode_refuses_a_bare_string_and_bad_batch_size(embedder):
    with pytest.raises(TypeError, match="wrap a single text in a list"):
        embedder.encode("hello")
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        embedder.encode(TEXTS, batch_size=0)


def test_fingerprint(embedder):
    fp = embedder.fingerprint()
    assert set(fp) == {
        "weights_sha256",
        "vocab_sha256",
        "dim",
        "max_length",
        "pooling",
        "normalize",
        "backend",
        "quantization",
    }
    assert len(fp["weights_sha256"]) == 64 and len(fp["vocab_sha256"]) == 64
    assert (fp["dim"], fp["max_length"], fp["pooling"], fp["normalize"]) == (384, 256, "mean", True)
    assert (fp["backend"], fp["quantization"]) == ("torch", None)
    assert embedder.fingerprint() == fp  # computed once, then cached


def test_threads_argument(embedder):
    import torch

    before = torch.get_num_threads()
    try:
        emb = load_embedder(threads=1)
        assert torch.get_num_threads() == 1
        np.testing.assert_allclose(emb.encode(TEXTS), embedder.encode(TEXTS), atol=1e-6, rtol=0)
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="threads must be a positive int"):
        load_embedder(threads=0)

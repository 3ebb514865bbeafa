"""The hashing embedder the service tests use keeps the real encoder's contract."""

from __future__ import annotations

import numpy as np
from fakes import TokenHashEmbedder

from semsearch.encoder.model_files import read_model_files


def test_it_has_the_real_model_files_dim_and_max_length():
    fake, files = TokenHashEmbedder(), read_model_files()
    assert (fake.dim, fake.max_length) == (files.dim, files.max_seq_length) == (384, 256)


def test_vectors_do_not_depend_on_the_batch():
    fake = TokenHashEmbedder()
    texts = ["short", "a much longer text " * 20, ""]
    single = np.concatenate([fake.encode([t]) for t in texts])
    np.testing.assert_allclose(fake.encode(texts), single, atol=1e-6)


def test_shared_tokens_are_close_and_unrelated_texts_apart():
    a, b, c = TokenHashEmbedder().encode(
        ["the quick brown fox", "the quick brown fox jumps", "unrelated words entirely"]
    )
    assert a @ b > 0.8 and abs(a @ c) < 0.2

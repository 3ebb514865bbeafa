"""The torch embedder against the real reference: sentence-transformers' all-MiniLM-L6-v2, in fp32.

2,000 real texts shipped with the project (`evaluation/data`: Python's language reference and
docstrings, Django's messages in 99 locales) spanning one word to 400+ tokens, so truncation at 256
is exercised. The reference runs once per module.
"""

from __future__ import annotations

import numpy as np
import pytest

from semsearch.encoder.model_files import default_model_dir
from semsearch.encoder.onnx.accuracy import FP32_MIN_COSINE
from semsearch.evaluation.corpus import long_texts, real_texts

st = pytest.importorskip("sentence_transformers")

N_REAL, N_LONG = 1950, 50
MAX_ABS_DIFF = 1e-5
SAME = 1e-6  # our own vectors computed two ways (batched vs alone, padded vs not)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return list(real_texts(N_REAL)) + long_texts(N_LONG)


@pytest.fixture(scope="module")
def reference_model():
    return st.SentenceTransformer(str(default_model_dir()), device="cpu")


@pytest.fixture(scope="module")
def reference(reference_model, texts) -> np.ndarray:
    return reference_model.encode(
        texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True
    )


@pytest.fixture(scope="module")
def embedder(real_embedder):
    return real_embedder


@pytest.fixture(scope="module")
def ours(embedder, texts) -> np.ndarray:
    return embedder.encode(texts, batch_size=32)


def _compare(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    cosines = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(cosines.min()), float(np.abs(a - b).max())


def test_corpus_covers_short_long_and_truncated_texts(embedder, texts):
    lengths = np.array([len(e) for e in embedder.tokenizer.encode_batch(texts)])
    assert len(texts) >= 2000
    assert lengths.min() <= 3 and lengths.max() >= 400
    assert (lengths > embedder.max_length).sum() >= N_LONG


def test_matches_sentence_transformers(ours, reference):
    assert ours.shape == reference.shape == (N_REAL + N_LONG, 384)
    assert ours.dtype == np.float32
    min_cos, max_diff = _compare(ours, reference)
    print(
        f"\nencoder vs sentence-transformers: min cosine {min_cos:.8f}, max |diff| {max_diff:.2e}"
    )
    assert min_cos >= FP32_MIN_COSINE
    assert max_diff <= MAX_ABS_DIFF
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)


def test_core_matches_on_reference_token_ids(embedder, reference, texts):
    """The model alone, fed transformers' fast-tokenizer ids (isolates the math from WordPiece)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(default_model_dir()))
    picked = list(range(0, N_REAL, 10)) + list(range(N_REAL, N_REAL + N_LONG, 5))
    got = np.empty((len(picked), embedder.dim), dtype=np.float32)
    for start in range(0, len(picked), 32):
        rows = picked[start : start + 32]
        enc = tokenizer(
            [texts[i] for i in rows],
            truncation=True,
            max_length=256,
            padding=True,
            return_tensors="np",
        )
        got[start : start + len(rows)] = embedder.encode_batch_arrays(
            enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]
        )
    min_cos, max_diff = _compare(got, reference[picked])
    assert min_cos >= FP32_MIN_COSINE and max_diff <= MAX_ABS_DIFF, (min_cos, max_diff)


def test_truncates_at_256_tokens_like_the_reference(embedder, reference_model, texts):
    long = [t for t in texts[N_REAL:] if len(embedder.tokenizer.encode(t)) > 300][:8]
    assert len(long) == 8
    extended = [t + " and then a tail that lies far beyond the truncation point" for t in long]
    ours_long, ours_extended = embedder.encode(long), embedder.encode(extended)
    np.testing.assert_allclose(ours_extended, ours_long, atol=SAME, rtol=0)  # the tail is cut
    ref = reference_model.encode(long, normalize_embeddings=True)
    _, max_diff = _compare(ours_long, ref)
    assert max_diff <= MAX_ABS_DIFF
    assert all(len(e) == 256 for e in embedder.tokenizer.encode_batch(long, max_length=256))


def test_batch_equals_one_by_one(embedder, texts, ours):
    picked = list(range(0, N_REAL, 97)) + [N_REAL, N_REAL + 1]
    alone = np.stack([embedder.encode([texts[i]])[0] for i in picked])
    np.testing.assert_allclose(alone, ours[picked], atol=SAME, rtol=0)
    again = embedder.encode([texts[i] for i in picked], batch_size=7)
    np.testing.assert_allclose(again, ours[picked], atol=SAME, rtol=0)


def test_padding_does_not_change_a_vector(embedder, texts):
    tok = embedder.tokenizer
    sample = [texts[i] for i in (0, 1, 2, 3, N_REAL)]
    encodings = tok.encode_batch(sample, max_length=embedder.max_length)
    tight = tok.pad(encodings)
    wide = tok.pad(encodings, pad_to=embedder.max_length)
    assert wide["input_ids"].shape == (5, 256)
    a = embedder.encode_batch_arrays(tight["input_ids"], tight["attention_mask"])
    b = embedder.encode_batch_arrays(
        wide["input_ids"], wide["attention_mask"], wide["token_type_ids"]
    )
    np.testing.assert_allclose(b, a, atol=SAME, rtol=0)
    for i, enc in enumerate(encodings):  # each text alone, padded to 256
        one = tok.pad([enc], pad_to=embedder.max_length)
        vec = embedder.encode_batch_arrays(
            one["input_ids"], one["attention_mask"], one["token_type_ids"]
        )
        np.testing.assert_allclose(vec[0], a[i], atol=SAME, rtol=0)

"""TEI's `/embed` and `/decode` beyond plain text: token-id inputs, `truncation_direction`,
`prompt_name`, and ids back to text, against the references on the real model.

`/decode` is compared with the `tokenizers` library (what TEI decodes with) on the real vocab;
vectors with sentence-transformers: its `encode` for texts (left truncation by its tokenizer's
`truncation_side`, prompts by `prompt_name=`), its forward pass for ids taken exactly as given.
Validation runs on the hashing embedder (tests/fakes.py: the real tokenizer and limits).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from semsearch.encoder import load_embedder
from semsearch.encoder.model_files import default_model_dir

# Accents (composed and not), CJK, punctuation and contractions the decoder's cleanup touches,
# words that become [UNK] (an emoji, a 101-letter word), literal special tokens, digits.
TEXTS = [
    "Héllo, wörld! Ünïcödé àccents: naïve café, re\u0301sume\u0301.",
    "東京タワーは日本の電波塔です。中文字符测试 한국어",
    "Don't stop -- isn't it? He's 'quoted' (parens) [brackets] {braces}; a.b,c!d?",
    "an emoji 🦜 and a long word " + "x" * 101 + " then more",
    "[CLS] literal [SEP] specials [MASK] in text [UNK] [PAD]",
    "1,234.56 € ½ ² #hashtag @user https://example.com/a?b=c",
    "",
]
# Over 256 tokens, its start unlike its end: which end a truncation keeps shows in the vector.
LONG = (
    "Astronomy and telescopes: " + "stars planets galaxies nebulae comets " * 60
    + "Cooking and recipes: " + "flour butter sugar eggs oven " * 60
)  # fmt: skip


def error_of(response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error_type"] == "Validation" and body["request_id"]
    return body["error"]


@pytest.fixture(scope="module")
def reference_tokenizer():
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(default_model_dir() / "tokenizer.json"))
    tokenizer.no_truncation()  # the file switches truncation and padding at 128 on
    tokenizer.no_padding()
    return tokenizer


@pytest.fixture(scope="module")
def st_model():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(default_model_dir()), device="cpu")


def st_vectors_of_ids(st_model, rows: list[list[int]]) -> np.ndarray:
    """sentence-transformers' vectors for these exact ids (no tokenizer involved)."""
    import torch

    out = []
    for ids in rows:
        features = {
            "input_ids": torch.tensor([ids]),
            "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
            "token_type_ids": torch.zeros(1, len(ids), dtype=torch.long),
        }
        with torch.inference_mode():
            out.append(st_model(features)["sentence_embedding"][0].numpy())
    return np.stack(out)


def embed(client, **body) -> np.ndarray:
    response = client.post("/embed", json=body)
    assert response.status_code == 200, response.text
    return np.asarray(response.json(), dtype=np.float32)


# --- /decode ---------------------------------------------------------------------------------


def test_decode_is_the_tokenizers_librarys_decode(make_client, fake_embedder, reference_tokenizer):
    rows = [reference_tokenizer.encode(t).ids for t in TEXTS]
    rng = np.random.default_rng(0)  # pieces in any order: `##` first, specials inside
    rows += [rng.integers(0, 30522, size=n).tolist() for n in (1, 5, 40)]
    rows += [[101, 2023, 1005, 1055, 1037, 100, 102, 0, 0], [1001, 103, 1012, 1029]]
    with make_client(fake_embedder) as client:
        for skip in (True, False):
            expected = [reference_tokenizer.decode(ids, skip_special_tokens=skip) for ids in rows]
            batch = client.post("/decode", json={"ids": rows, "skip_special_tokens": skip})
            assert batch.status_code == 200, batch.text
            assert batch.json() == expected
            single = client.post("/decode", json={"ids": rows[0], "skip_special_tokens": skip})
            assert single.json() == expected[:1]
        # TEI's default skips the special tokens.
        assert client.post("/decode", json={"ids": rows}).json()[4] == reference_tokenizer.decode(
            rows[4]
        )


def test_decode_refuses_what_it_cannot_decode(make_client, fake_embedder):
    with make_client(fake_embedder, max_input_chars=100) as client:
        assert "30522 at position 1" in error_of(
            client.post("/decode", json={"ids": [[101], [101, 30522]]}), 422
        )
        assert "sequence 0: token id -5 at position 0" in error_of(
            client.post("/decode", json={"ids": [-5]}), 422
        )
        assert "at least one" in error_of(client.post("/decode", json={"ids": []}), 422)
        assert "empty" in error_of(client.post("/decode", json={"ids": [[1], []]}), 422)
        error_of(client.post("/decode", json={"ids": [1.5]}), 422)
        error_of(client.post("/decode", json={"ids": [True]}), 422)
        assert "32" in error_of(client.post("/decode", json={"ids": [[1]] * 33}), 413)
        too_many = client.post("/decode", json={"ids": [[1000] * 60, [1000] * 60]})
        assert "SEMSEARCH_MAX_INPUT_CHARS" in error_of(too_many, 413)
        assert client.post("/decode", json={"ids": [[1000] * 50, [1000] * 50]}).status_code == 200


# --- /embed: truncation_direction --------------------------------------------------------------


def test_left_truncation_keeps_the_end_as_sentence_transformers_does(
    make_client, real_embedder, st_model
):
    assert len(real_embedder.tokenizer.encode(LONG)) > 600
    right_ref = st_model.encode([LONG], normalize_embeddings=True)
    st_model.tokenizer.truncation_side = "left"
    try:
        left_ref = st_model.encode([LONG], normalize_embeddings=True)
    finally:
        st_model.tokenizer.truncation_side = "right"
    assert float(left_ref[0] @ right_ref[0]) < 0.9  # the two ends mean different things
    with make_client(real_embedder) as client:
        left = embed(client, inputs=[LONG], truncation_direction="Left")
        np.testing.assert_allclose(left, left_ref, atol=1e-5)
        np.testing.assert_allclose(embed(client, inputs=LONG, truncation_direction="left"), left)
        np.testing.assert_allclose(embed(client, inputs=[LONG]), right_ref, atol=1e-5)
        right = embed(client, inputs=[LONG], truncation_direction="Right")
        np.testing.assert_allclose(right, right_ref, atol=1e-5)
        # Short inputs are not cut at all: both directions give the same vector.
        np.testing.assert_allclose(
            embed(client, inputs=TEXTS[:3], truncation_direction="Left"),
            embed(client, inputs=TEXTS[:3]),
            atol=1e-6,
        )
        refused = client.post(
            "/embed", json={"inputs": LONG, "truncate": False, "truncation_direction": "Left"}
        )
        assert "256" in error_of(refused, 413)
        error_of(client.post("/embed", json={"inputs": "x", "truncation_direction": "LEFT"}), 422)


# --- /embed: token ids -------------------------------------------------------------------------


def test_ids_from_tokenize_give_the_texts_vectors(make_client, real_embedder):
    with make_client(real_embedder) as client:
        tokens = client.post("/tokenize", json={"inputs": TEXTS}).json()
        ids = [[t["id"] for t in row] for row in tokens]
        from_texts = embed(client, inputs=TEXTS)
        np.testing.assert_allclose(embed(client, inputs=ids), from_texts, atol=1e-5)
        mixed = [TEXTS[0], ids[1], TEXTS[2], ids[3]]
        np.testing.assert_allclose(embed(client, inputs=mixed), from_texts[:4], atol=1e-5)
        single = embed(client, inputs=ids[2])  # one flat list is one input
        assert single.shape == (1, 384)
        np.testing.assert_allclose(single[0], from_texts[2], atol=1e-5)
        raw = embed(client, inputs=ids, normalize=False)
        np.testing.assert_allclose(raw, embed(client, inputs=TEXTS, normalize=False), atol=1e-4)


def test_ids_are_embedded_exactly_as_given_as_sentence_transformers_would(
    make_client, real_embedder, st_model, reference_tokenizer
):
    full = reference_tokenizer.encode(LONG).ids  # [CLS] ... [SEP], over 256
    bare = reference_tokenizer.encode(TEXTS[0], add_special_tokens=False).ids  # nothing added
    rows = [full[:256], full[-256:], bare]
    expected = st_vectors_of_ids(st_model, rows)
    with make_client(real_embedder) as client:
        # A long list is cut to the model's 256 as given: its first ids, or its last with Left.
        np.testing.assert_allclose(embed(client, inputs=[full, bare]), expected[[0, 2]], atol=1e-5)
        left = embed(client, inputs=[full, bare], truncation_direction="Left")
        np.testing.assert_allclose(left, expected[[1, 2]], atol=1e-5)
        refused = client.post("/embed", json={"inputs": full, "truncate": False})
        assert f"{len(full)} tokens" in error_of(refused, 413)


def test_bad_token_ids_are_refused(make_client, fake_embedder):
    with make_client(fake_embedder, max_input_chars=300) as client:
        message = error_of(client.post("/embed", json={"inputs": ["ok", [101, 30522, 102]]}), 422)
        assert "input 1: token id 30522 at position 1" in message
        assert "input 0: token id -1" in error_of(client.post("/embed", json={"inputs": [-1]}), 422)
        assert "empty" in error_of(client.post("/embed", json={"inputs": ["x", []]}), 422)
        assert "at least one" in error_of(client.post("/embed", json={"inputs": []}), 422)
        for bad in ([1.0], [True], [[1, "a"]], [[[1]]]):
            error_of(client.post("/embed", json={"inputs": bad}), 422)
        too_long = error_of(client.post("/embed", json={"inputs": [1000] * 301}), 413)
        assert "301 token ids" in too_long and "SEMSEARCH_MAX_INPUT_CHARS" in too_long


# --- /embed: details ----------------------------------------------------------------------------


def details(client, **body) -> dict:
    response = client.post("/embed", json={**body, "details": True})
    assert response.status_code == 200, response.text
    return response.json()


def test_details_count_tokens_and_truncation_as_the_fast_tokenizer_does(make_client, fake_embedder):
    from transformers import BertTokenizerFast

    reference = BertTokenizerFast.from_pretrained(str(default_model_dir()))
    # One piece per "a": 256 tokens with [CLS] and [SEP] (the model's maximum), then one more.
    edge = ["a " * 254, "a " * 255]
    texts = [*TEXTS, LONG, *edge]
    with make_client(fake_embedder) as client:
        assert isinstance(client.post("/embed", json={"inputs": "x"}).json()[0], list)  # TEI's
        for side in ("right", "left"):
            reference.truncation_side = side
            full = [len(reference(t)["input_ids"]) for t in texts]
            assert full[-3] > 600 and full[-2:] == [256, 257]
            cut = [reference(t, truncation=True, max_length=256)["input_ids"] for t in texts]
            got = details(client, inputs=texts, truncation_direction=side.title())
            assert got["n_tokens"] == [len(ids) for ids in cut]
            assert got["truncated"] == [n > 256 for n in full]
            assert got["truncated"] == [False] * len(TEXTS) + [True, False, True]
            # The tokens fed to the model are the reference's cut ones: the same vectors.
            np.testing.assert_allclose(got["embeddings"], embed(client, inputs=cut), atol=1e-6)
        # Token ids: their own count, cut at 256 as given.
        ids = reference(LONG)["input_ids"]
        got = details(client, inputs=[ids, ids[:256], ids[:9]], truncation_direction="Left")
        assert (got["n_tokens"], got["truncated"]) == ([256, 256, 9], [True, False, False])
        # Without truncation nothing is cut (a longer input is a 413), and one text is one row.
        got = details(client, inputs=TEXTS, truncate=False)
        assert got["n_tokens"] == [len(reference(t)["input_ids"]) for t in TEXTS]
        assert got["truncated"] == [False] * len(TEXTS)
        one = details(client, inputs=TEXTS[0])
        assert (len(one["embeddings"]), one["n_tokens"]) == (1, got["n_tokens"][:1])


# --- /embed: prompt_name -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prompted_model_dir(tmp_path_factory):
    """The real model with two prompts in its sentence-transformers config (weights linked)."""
    src, dst = default_model_dir(), tmp_path_factory.mktemp("prompted") / "model"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model.safetensors"))
    (dst / "model.safetensors").symlink_to(src / "model.safetensors")
    config = json.loads((dst / "config_sentence_transformers.json").read_text())
    config["prompts"] = {"query": "query: ", "passage": "Represent this passage: "}
    (dst / "config_sentence_transformers.json").write_text(json.dumps(config))
    return dst


def test_prompt_name_prepends_the_models_prompt_as_sentence_transformers_does(
    make_client, prompted_model_dir
):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(prompted_model_dir), device="cpu")
    embedder = load_embedder(prompted_model_dir, backend="torch")
    texts = ["what is vector search?", "FAISS searches dense vectors.", LONG]
    with make_client(embedder) as client:
        for name in ("query", "passage"):
            expected = reference.encode(texts, prompt_name=name, normalize_embeddings=True)
            got = embed(client, inputs=texts, prompt_name=name)
            np.testing.assert_allclose(got, expected, atol=1e-5)
        plain = embed(client, inputs=texts)
        assert float(plain[0] @ got[0]) < 0.99  # the prompt changed the vector
        # Token ids with a prompt: read back as text after it, as TEI does.
        tokens = client.post("/tokenize", json={"inputs": texts}).json()
        ids = [[t["id"] for t in row] for row in tokens]
        np.testing.assert_allclose(
            embed(client, inputs=ids[:2], prompt_name="query"),
            embed(client, inputs=texts[:2], prompt_name="query"),
            atol=1e-5,
        )
        unknown = error_of(client.post("/embed", json={"inputs": "x", "prompt_name": "doc"}), 422)
        assert "'doc'" in unknown and "'passage', 'query'" in unknown


def test_prompt_name_on_a_model_without_prompts_is_refused(make_client, fake_embedder):
    assert fake_embedder.prompts == {}  # all-MiniLM-L6-v2 defines none
    with make_client(fake_embedder) as client:
        refused = client.post("/embed", json={"inputs": "x", "prompt_name": "query"})
        assert "defines no prompts" in error_of(refused, 422)

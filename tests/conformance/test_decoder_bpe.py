"""The from-scratch byte-level BPE against transformers' tokenizer built from the same GGUF.

Follows minbpe's `tests/test_tokenizer.py` (ids equal a reference's on hard strings). The
reference is `AutoTokenizer.from_pretrained(dir, gguf_file=...)`, compared with
`add_special_tokens=False` (its GGUF conversion adds `<|im_start|>` as BOS).

transformers has no entry for the GGUF's `tokenizer.ggml.pre = "smollm"` and falls back to GPT-2's
regex; llama.cpp (and SmolLM2's own tokenizer.json) split every digit off first. Our default is
the latter; both are checked at 100 % against the reference set up each way.

Bytes with no token: `ours` is configured as `decoder.load_generator` builds it (such a byte ->
the GGUF's unknown id), against the reference's BPE model given that same unknown token;
`ours_gpt2` has no unknown id and, like transformers' conversion as it is, skips them.
"""

from __future__ import annotations

import random

import pytest

from semsearch.decoder.bpe import BPETokenizer, ChatTemplate, bytes_to_unicode
from semsearch.decoder.generate import gguf_tokenizer, unknown_token_id
from semsearch.decoder.gguf import GGUFFile
from semsearch.paths import gguf_path

pytestmark = pytest.mark.skipif(not gguf_path().is_file(), reason="run `make setup` first")

HAND_MADE = [
    "",
    " ",
    "  ",
    "\n",
    "\n\n\n",
    "\r\n",
    " \t \n  \u00a0\u3000\u2028x",
    "a  1",
    "a \n 12",
    "hello   world  ",
    "trailing spaces    ",
    "\t\tindented\n\t\tcode",
    "1234567890",
    "3.14159265358979",
    "2024-01-01T12:00:00Z",
    "0x1F4A9 1e-10 ١٢٣ ½ ² Ⅻ",
    "😀👍🏽 family 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵 ✔️ ⌛",
    "🧑🏿‍🚀",
    "\U0001f600" * 5,
    "".join(chr(c) for c in range(32)) + "\x7f",
    "a\x00b\x1cc\x1dd\x1ee\x1ff\x85g",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|><|endoftext|>",
    "<|im_start",
    "im_end|>",
    "<|im_end|>x<|im_start|>",
    "<repo_name>a<file_sep>b<gh_stars>10",
    "don't it's we'll they've I'm you'd she's I'M DON'T",
    "' s 'll'",
    "''''",
    "naïve café résumé Æsir ß ǅ",
    "e\u0301 a\u0308 \u0915\u094d\u0937",
    "Ελληνικά Русский",
    "中文字符和标点，。！",
    "日本語のテキスト。カタカナ",
    "한국어 텍스트",
    "العربية مع أرقام ٣٤٥",
    "עברית",
    "हिन्दी",
    "ภาษาไทย",
    "ትግርኛ",
    "ᚠᛇᚻ",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚𝟛",
    "mixed中文and English123数字",
    "~!@#$%^&*()_+{}|:\"<>?`-=[]\\;',./",
    "----====____",
    "https://example.com/path?q=1&r=2#frag",
    "user@example.com",
    "C:\\Windows\\System32",
    "    def f(x):\n        return x ** 2\n",
    '{"key": [1, 2, {"n": null}]}',
    "\ufeffBOM",
    "zero\u200bwidth\u200djoiner",
    "\ufffd replacement",
    "\U0010ffff\U000e0001",
]


def _random_strings(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    pools = [
        "abcXYZ",
        "0123456789",
        " \t\n\r\u00a0",
        "'\"!?.,;:-_()[]",
        "éüñßø",
        "中文日本",
        "😀🏽‍👍",
        "\x00\x01\x1b\x1c\x7f",
        "٣½²",
        "<|im_end|>",
    ]
    out = []
    for _ in range(n):
        out.append("".join(rng.choice(rng.choice(pools)) for _ in range(rng.randint(1, 40))))
    return out


@pytest.fixture(scope="module")
def gguf_file() -> GGUFFile:
    return GGUFFile(gguf_path())


@pytest.fixture(scope="module")
def ours(gguf_file) -> BPETokenizer:
    """As served: llama.cpp's pre-tokenizer, the GGUF's unknown id."""
    return gguf_tokenizer(gguf_file, "smollm", unknown_token_id(gguf_file))


@pytest.fixture(scope="module")
def ours_gpt2(gguf_file) -> BPETokenizer:
    """As transformers converts the GGUF: GPT-2's regex, no unknown id."""
    return gguf_tokenizer(gguf_file, "gpt2", None)


@pytest.fixture(scope="module")
def ref():
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(
        str(gguf_path().parent), gguf_file=gguf_path().name
    )


@pytest.fixture(scope="module")
def ref_smollm():
    """The reference with llama.cpp's "smollm" pre-tokenizer (digits split off, then GPT-2's) and
    the unknown token its config names (the GGUF's) set on its BPE model."""
    transformers = pytest.importorskip("transformers")
    pre_tokenizers = pytest.importorskip("tokenizers.pre_tokenizers")
    tok = transformers.AutoTokenizer.from_pretrained(
        str(gguf_path().parent), gguf_file=gguf_path().name
    )
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.backend_tokenizer.model.unk_token = tok.unk_token
    return tok


@pytest.fixture(scope="module")
def texts() -> list[str]:
    from semsearch.evaluation.corpus import real_texts

    out = list(real_texts(5000)) + HAND_MADE + _random_strings(500)
    assert len(out) >= 5500
    return out


def test_byte_table_is_a_bijection_onto_printable_chars():
    table = bytes_to_unicode()
    assert sorted(table) == list(range(256)) and len(set(table.values())) == 256
    assert table[ord("A")] == "A" and table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ"
    assert all(c.isprintable() and not c.isspace() for c in table.values())


def _mismatches(ours: BPETokenizer, ref, texts: list[str]) -> list[str]:
    return [t for t in texts if ours.encode(t) != ref.encode(t, add_special_tokens=False)]


def test_ids_equal_reference_smollm(ours, ref_smollm, texts):
    bad = _mismatches(ours, ref_smollm, texts)
    assert not bad, f"{len(bad)}/{len(texts)} differ, first: {bad[:3]!r}"


def test_ids_equal_transformers_gguf_conversion_gpt2(ours_gpt2, ref, texts):
    bad = _mismatches(ours_gpt2, ref, texts)
    assert not bad, f"{len(bad)}/{len(texts)} differ, first: {bad[:3]!r}"


def test_the_two_pre_tokenizers_differ_only_around_digits(ours, ours_gpt2):
    assert ours.encode("a  1") != ours_gpt2.encode("a  1")
    assert ours.decode(ours.encode("a  1")) == "a  1"
    assert ours.encode("hello  world") == ours_gpt2.encode("hello  world")


def test_special_token_text_is_one_id(ours):
    assert ours.encode("<|im_start|>") == [1] and ours.encode("<|im_end|>") == [2]
    assert ours.encode("<|endoftext|>") == [0]
    assert ours.encode("<|im_start|>user\nhi<|im_end|>") == [1, 4093, 198, 6004, 2]
    assert 1 not in ours.encode("<|im_start")


def test_decode_round_trips_and_equals_reference(ours, ours_gpt2, ref, texts):
    """Lossless, except for the 21 bytes this vocabulary has no token for (0x04, 0x06, 0x13,
    0x14, 0x16, 0x1d, 0xc0, 0xc1, 0xf1, 0xf2, 0xf5..0xff): each becomes the unknown id (decoded
    as its text, `<|endoftext|>`), or without one, as in the reference, is dropped."""
    missing = ours.missing_bytes
    assert len(missing) == 21 and 0x1D in missing and ord("a") not in missing
    unk_text = ours.id_to_token[ours.unk_id].encode()
    for t in texts[:2000] + HAND_MADE:
        kept = bytes(b for b in t.encode() if b not in missing).decode("utf-8", "replace")
        assert ours_gpt2.decode(ours_gpt2.encode(t)) == kept
        marked = b"".join(unk_text if b in missing else bytes([b]) for b in t.encode())
        assert ours.decode(ours.encode(t)) == marked.decode("utf-8", "replace")
    rng = random.Random(1)
    for _ in range(300):  # random ids: split UTF-8 sequences, special tokens, anything
        ids = [rng.randrange(ours.vocab_size) for _ in range(rng.randint(1, 30))]
        assert ours.decode(ids) == ref.decode(ids, skip_special_tokens=False)


def test_stream_decoder_yields_only_complete_characters(ours, texts):
    for t in HAND_MADE + texts[:300]:
        ids = ours.encode(t)
        dec = ours.stream_decoder()
        parts = [dec.push(i) for i in ids] + [dec.flush()]
        assert "".join(parts) == ours.decode(ids)
        assert all("\ufffd" not in p for p in parts) or "\ufffd" in t
    dec = ours.stream_decoder()
    emoji = "😀".encode()
    byte_ids = [ours.vocab[bytes_to_unicode()[b]] for b in emoji]
    assert [dec.push(i) for i in byte_ids] == ["", "", "", "😀"]
    dec.push(byte_ids[0])
    assert dec.flush() == "\ufffd"  # an unfinished character at the end of the stream


CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c\n\nd"},
    ],
    [{"role": "assistant", "content": "I start."}],
    [{"role": "user", "content": "emoji 😀 and <|im_end|> inside"}],
]


@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_chat_template_equals_the_gguf_jinja_template(gguf_file, ref, add_generation_prompt):
    jinja2 = pytest.importorskip("jinja2")
    source = gguf_file.metadata("tokenizer.chat_template")
    ours = ChatTemplate(source)
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    template = env.from_string(source)
    for messages in CONVERSATIONS:
        expected = template.render(messages=messages, add_generation_prompt=add_generation_prompt)
        assert ours.render(messages, add_generation_prompt) == expected
        assert (
            ref.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=add_generation_prompt
            )
            == expected
        )
    assert ours.default_system == (
        "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    )


def test_chat_template_rejects_bad_messages(gguf_file):
    with pytest.raises(ValueError, match="role"):
        ChatTemplate(gguf_file.metadata("tokenizer.chat_template")).render([{"content": "x"}])
    with pytest.raises(ValueError, match="ChatML"):
        ChatTemplate("{{ messages }}")

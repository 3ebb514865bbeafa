"""Sampling and the generation loop: masks against transformers' logits processors, seeds, stop
strings and ids, streaming deltas, finish reasons, usage.

The loop tests drive `Generator` with a scripted model whose argmax follows a fixed token list, so
every stop condition is exercised deterministically and fast (the real tokenizer, no real model).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from semsearch.decoder.config import DecoderConfig
from semsearch.decoder.generate import Generator, _held_back
from semsearch.decoder.kv_cache import KVCache
from semsearch.decoder.sampling import (
    SAMPLING_EPS,
    SamplingParams,
    apply_repetition_penalty,
    next_token,
    top_k_mask,
    top_p_mask,
)
from semsearch.paths import gguf_path


@pytest.fixture(scope="module")
def ref_processors():
    return pytest.importorskip("transformers.generation.logits_process")


def test_top_k_and_top_p_equal_transformers(ref_processors):
    lp = ref_processors
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        logits = torch.randn(1, 500, generator=g) * 3
        for k in (1, 5, 50):
            expected = lp.TopKLogitsWarper(k)(None, logits.clone())[0]
            assert torch.equal(top_k_mask(logits[0], k), expected)
        for p in (0.1, 0.5, 0.9, 0.99):
            expected = lp.TopPLogitsWarper(p)(None, logits.clone())[0]
            assert torch.equal(top_p_mask(logits[0], p), expected)
    assert torch.equal(top_k_mask(logits[0], 0), logits[0])
    assert torch.equal(top_p_mask(logits[0], 1.0), logits[0])


def test_repetition_penalty_equals_transformers(ref_processors):
    logits = torch.randn(1, 100, generator=torch.Generator().manual_seed(1)) * 4
    seen = torch.tensor([[3, 7, 7, 50, 99]])
    expected = ref_processors.RepetitionPenaltyLogitsProcessor(1.3)(seen, logits.clone())[0]
    got = apply_repetition_penalty(logits[0], seen[0], 1.3)
    assert torch.equal(got, expected)
    assert torch.equal(apply_repetition_penalty(logits[0], seen[0], 1.0), logits[0])


def test_greedy_seed_and_masks_in_next_token():
    logits = torch.randn(1000, generator=torch.Generator().manual_seed(2))
    assert next_token(logits, SamplingParams(), torch.Generator()) == int(logits.argmax())
    hot = SamplingParams(temperature=1.5, seed=11)
    a = [next_token(logits, hot, g) for g in [hot.torch_generator()] for _ in range(30)]
    b = [next_token(logits, hot, g) for g in [hot.torch_generator()] for _ in range(30)]
    c = [
        next_token(logits, hot, g)
        for g in [SamplingParams(1.5, seed=12).torch_generator()]
        for _ in range(30)
    ]
    assert a == b and a != c
    top3 = set(logits.topk(3).indices.tolist())
    k3 = SamplingParams(temperature=5.0, top_k=3, seed=0)
    g = k3.torch_generator()
    assert {next_token(logits, k3, g) for _ in range(200)} <= top3
    tiny_p = SamplingParams(temperature=1.0, top_p=1e-6, seed=0)
    assert next_token(logits, tiny_p, tiny_p.torch_generator()) == int(logits.argmax())


@pytest.mark.parametrize(
    "bad",
    [
        {"temperature": -1},
        {"top_p": 0},
        {"top_p": 1.5},
        {"top_k": -1},
        {"repetition_penalty": 0},
        # non-finite values: NaN fails every comparison, inf passed the old `>= 0` / `> 0` checks
        {"temperature": math.nan},
        {"temperature": math.inf},
        {"top_p": math.nan},
        {"repetition_penalty": math.nan},
        {"repetition_penalty": math.inf},
        {"top_k": 2.5},
        {"temperature": "0.5"},
        # torch's manual_seed wraps negatives modulo 2**64 and overflows at 2**64
        {"seed": -1},
        {"seed": -(2**63)},
        {"seed": 2**64},
        {"seed": 2**70},
        {"seed": 1.5},
        {"seed": True},
    ],
)
def test_sampling_params_are_validated(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        SamplingParams(**bad)


@pytest.mark.parametrize("seed", [0, 1, 2**63, 2**64 - 1])
def test_every_64_bit_seed_is_accepted_and_reproducible(seed):
    logits = torch.randn(300, generator=torch.Generator().manual_seed(3))
    params = SamplingParams(temperature=1.0, seed=seed)
    draws = [
        [next_token(logits, params, g) for _ in range(20)]
        for g in (params.torch_generator(), params.torch_generator())
    ]
    assert draws[0] == draws[1]
    assert params.torch_generator().initial_seed() == seed


@pytest.mark.parametrize("temperature", [1e-40, 1e-300, 5e-324, 1e-6, SAMPLING_EPS / 2])
def test_temperature_below_eps_is_greedy(temperature):
    """logits / 1e-40 overflows float32 to inf and softmax gives NaN: treated as greedy instead."""
    g = torch.Generator().manual_seed(4)
    params = SamplingParams(temperature=temperature, top_p=0.9, top_k=5, seed=0)
    assert params.greedy
    rng = params.torch_generator()
    for _ in range(20):
        logits = torch.randn(1000, generator=g) * 5
        assert next_token(logits, params, rng) == int(logits.argmax())


def test_temperature_at_eps_and_above_samples():
    assert not SamplingParams(temperature=SAMPLING_EPS).greedy
    logits = torch.zeros(50)
    logits[:5] = torch.tensor([2.0, 1.9, 1.8, 1.7, 1.6])
    params = SamplingParams(temperature=0.5, seed=0)
    rng = params.torch_generator()
    assert len({next_token(logits, params, rng) for _ in range(200)}) > 1


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(temperature=100.0, seed=0),
        SamplingParams(temperature=100.0, top_p=1e-9, seed=0),
        SamplingParams(temperature=SAMPLING_EPS, seed=0),
        SamplingParams(temperature=1.0, top_p=1e-300, top_k=1, seed=0),
        SamplingParams(temperature=2.0, repetition_penalty=10.0, seed=0),
        SamplingParams(temperature=100.0, top_p=0.5, top_k=3, repetition_penalty=10.0, seed=0),
        # A penalty this small divides logits past float32's range (found by schemathesis).
        SamplingParams(temperature=1.0, top_p=3.3e-237, repetition_penalty=3.7e-169, seed=0),
        SamplingParams(temperature=SAMPLING_EPS, repetition_penalty=1e-300, seed=0),
    ],
)
def test_extreme_valid_values_never_give_nan(params):
    """Random logits at several scales, some already -inf, every id seen: each draw is a valid id
    (torch.multinomial raises on NaN or inf probabilities)."""
    g = torch.Generator().manual_seed(5)
    rng = params.torch_generator()
    for scale in (1e-3, 1.0, 30.0, 1e4):
        for _ in range(10):
            logits = torch.randn(2000, generator=g) * scale
            logits[torch.randperm(2000, generator=g)[:100]] = float("-inf")
            seen = torch.randint(0, 2000, (300,), generator=g)
            tok = next_token(logits, params, rng, seen)
            assert 0 <= tok < 2000 and math.isfinite(float(logits[tok]))


def test_held_back_tail():
    assert _held_back("hello wor", ["world"]) == 3
    assert _held_back("hello", ["world"]) == 0
    assert _held_back("ab", ["abc", "b"]) == 2


class Scripted(nn.Module):
    """Logits whose argmax is `script[i]` at the i-th generated position."""

    weights = "fp32"

    def __init__(self, config: DecoderConfig, script: list[int], prompt_len: int) -> None:
        super().__init__()
        self.config, self.script, self.prompt_len = config, script, prompt_len

    def new_cache(self, max_len: int) -> KVCache:
        return KVCache(1, 1, 2, max_len)

    def forward(
        self,
        ids: torch.Tensor,
        start: int = 0,
        cache: KVCache | None = None,
        last_only: bool = False,
    ) -> torch.Tensor:
        i = start + ids.shape[1] - self.prompt_len
        logits = torch.zeros(1, 1, self.config.vocab_size)
        logits[0, 0, self.script[i]] = 10.0
        return logits


@pytest.fixture(scope="module")
def parts():
    if not gguf_path().is_file():
        pytest.skip("run `make setup` first")
    from semsearch.decoder.bpe import BPETokenizer, ChatTemplate
    from semsearch.decoder.gguf import GGUFFile

    f = GGUFFile(gguf_path())
    tok = BPETokenizer(
        f.metadata("tokenizer.ggml.tokens"),
        f.metadata("tokenizer.ggml.merges"),
        f.metadata("tokenizer.ggml.token_type"),
    )
    return tok, ChatTemplate(f.metadata("tokenizer.chat_template")), f


def scripted(
    parts, text: str, prompt: list[int], context: int = 8192, tail: list[int] | None = None
) -> Generator:
    tok, chat, f = parts
    script = tok.encode(text) + (tail or []) + [tok.encode(".")[0]] * 64
    config = DecoderConfig(max_position_embeddings=context)
    return Generator(Scripted(config, script, len(prompt)), tok, chat, f)


PROMPT = [1, 4093, 198]


def test_stop_string_cuts_text_and_streams_only_final_text(parts):
    gen = scripted(parts, "Hello world. STOP here and more", PROMPT)
    events = list(gen.stream(PROMPT, max_new_tokens=20, stop=["STOP", "never"]))
    text = "".join(e.text for e in events)
    assert text == "Hello world. "
    assert events[-1].finish_reason == "stop" and all(e.finish_reason is None for e in events[:-1])
    assert all(e.usage is None for e in events[:-1])
    assert events[-1].usage["completion_tokens"] == len(events)
    assert "ST" not in "".join(e.text for e in events)  # a held-back prefix is never emitted


def test_stop_string_spanning_tokens_and_a_single_string(parts):
    gen = scripted(parts, "one two three four", PROMPT)
    assert "".join(e.text for e in gen.stream(PROMPT, max_new_tokens=20, stop="o thr")) == "one tw"


def test_stop_ids_eos_and_length(parts):
    tok = parts[0]
    gen = scripted(parts, "a b c", PROMPT, tail=[2, 5, 6])
    out = gen.generate(PROMPT, max_new_tokens=20)
    assert out == tok.encode("a b c") + [2]  # EOS ends it and is included
    events = list(gen.stream(PROMPT, max_new_tokens=20))
    assert events[-1].finish_reason == "stop" and "".join(e.text for e in events) == "a b c"
    longer = gen.generate(PROMPT, max_new_tokens=6, stop_at_eos=False)
    assert longer == tok.encode("a b c") + [2, 5, 6]
    assert gen.generate(PROMPT, max_new_tokens=20, stop=[tok.encode(" b")[0]]) == tok.encode("a b")
    events = list(gen.stream(PROMPT, max_new_tokens=2))
    assert len(events) == 2 and events[-1].finish_reason == "length"
    assert events[-1].usage == {
        "prompt_tokens": 3,
        "completion_tokens": 2,
        "total_tokens": 5,
        "cached_tokens": 0,
    }
    zero = list(gen.stream(PROMPT, max_new_tokens=0))
    assert [(e.text, e.finish_reason) for e in zero] == [("", "length")]


def test_context_length_caps_generation(parts):
    gen = scripted(parts, "x " * 20, PROMPT, context=8)
    events = list(gen.stream(PROMPT, max_new_tokens=50))
    assert len(events) == 5 and events[-1].finish_reason == "length"
    with pytest.raises(ValueError, match="context"):
        gen.generate(list(range(3, 11)))


def test_multibyte_characters_stream_whole(parts):
    gen = scripted(parts, "é 😀 中文", PROMPT)
    deltas = [e.text for e in gen.stream(PROMPT, max_new_tokens=len(parts[0].encode("é 😀 中文")))]
    assert "".join(deltas) == "é 😀 中文"
    assert all("\ufffd" not in d for d in deltas)


def test_bad_requests(parts):
    gen = scripted(parts, "a", PROMPT)
    with pytest.raises(ValueError, match="empty"):
        gen.generate([])
    with pytest.raises(ValueError, match="prompt ids"):
        gen.generate([49152])
    with pytest.raises(ValueError, match="stop"):
        gen.generate(PROMPT, stop=[""])
    with pytest.raises(ValueError, match="max_new_tokens"):
        gen.generate(PROMPT, max_new_tokens=-1)
    with pytest.raises(ValueError, match="temperature"):
        gen.generate(PROMPT, temperature=-0.5)


def test_missing_gguf_says_how_to_fetch_it(tmp_path):
    from semsearch.decoder import load_generator

    with pytest.raises(FileNotFoundError, match="make setup"):
        load_generator(tmp_path / "missing.gguf")

"""The decoder against transformers' `LlamaForCausalLM` loaded from the same GGUF in fp32.

Follows transformers' `test_modeling_llama.py` integration tests (greedy text and logits against a
reference) and its cache tests (generation with the cache == without). The reference model is
loaded once for this module (it dequantizes to fp32, ~600 MB). Needs the GGUF (`make setup`).
"""

from __future__ import annotations

import logging

import pytest
import torch

from semsearch.decoder import load_generator
from semsearch.decoder.gguf import GGUFFile
from semsearch.decoder.weights import permute_qk, unpermute_qk
from semsearch.paths import gguf_path

pytestmark = pytest.mark.skipif(not gguf_path().is_file(), reason="run `make setup` first")
log = logging.getLogger(__name__)

NEW_TOKENS = 32
LOGIT_TOL = 1e-3

PLAIN = [
    "The capital of France is",
    'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n',
    "Once upon a time, in a small village by the sea,",
    "The three primary colors are",
    "import numpy as np\n\nx = np.arange(10)\n",
    "Water boils at 100 degrees Celsius, which is",
    "Photosynthesis is the process by which",
    "1, 2, 3, 5, 8, 13,",
    "Le chat est sur la table. The cat",
    "Q: What is the largest planet in the solar system?\nA:",
    "SELECT name, age FROM users WHERE",
    "The quick brown fox",
]
CHAT = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Write a haiku about autumn."}],
    [
        {"role": "system", "content": "You answer in one short sentence."},
        {"role": "user", "content": "Why is the sky blue?"},
    ],
    [{"role": "user", "content": "Give me three tips for learning Python."}],
    [{"role": "user", "content": "Translate 'good morning' into Spanish."}],
    [{"role": "user", "content": "What is 12 times 7?"}],
    [
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a fun fact about octopuses."},
    ],
    [{"role": "user", "content": "Explain recursion to a child. 🧒"}],
    [{"role": "user", "content": "List the planets in order from the sun."}],
    [
        {"role": "system", "content": "You are a pirate."},
        {"role": "user", "content": "Describe your ship."},
    ],
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """1 thread: on 2 shared cores, torch's 2-thread pool collapses when a core is taken."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def gen(one_thread):
    torch.manual_seed(0)
    return load_generator()


@pytest.fixture(scope="module")
def ref(one_thread):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    pytest.importorskip("accelerate")
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(gguf_path().parent), gguf_file=gguf_path().name, dtype=torch.float32
    )
    return model.eval()


@pytest.fixture(scope="module")
def prompts(gen) -> list[list[int]]:
    ids = [gen.tokenizer.encode(p) for p in PLAIN]
    ids += [gen.tokenizer.encode(gen.apply_chat_template(m)) for m in CHAT]
    assert len(ids) >= 20
    return ids


@pytest.fixture(scope="module")
def continuations(gen, prompts) -> list[list[int]]:
    return [gen.generate(p, max_new_tokens=NEW_TOKENS, stop_at_eos=False) for p in prompts]


def test_weights_equal_reference_after_unpermuting(gen, ref):
    """Pins the Q/K row order: ours (un-permuted) == transformers' q_proj/k_proj, bit for bit."""
    sd = ref.state_dict()
    c = gen.config
    for layer in (0, c.num_hidden_layers - 1):
        qkv = gen.model.model.layers[layer].self_attn.qkv_proj.weight
        q_rows, k_rows = c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim
        ref_q = sd[f"model.layers.{layer}.self_attn.q_proj.weight"]
        ref_k = sd[f"model.layers.{layer}.self_attn.k_proj.weight"]
        assert torch.equal(qkv[:q_rows], ref_q)
        assert torch.equal(qkv[q_rows : q_rows + k_rows], ref_k)
        # and the file itself holds them permuted, as llama.cpp's converter writes them
        stored = GGUFFile(gguf_path()).tensors()[f"blk.{layer}.attn_k.weight"].to_numpy()
        assert not torch.equal(torch.from_numpy(stored), ref_k)
        assert (permute_qk(ref_k.numpy(), c.num_key_value_heads) == stored).all()
        assert (unpermute_qk(stored, c.num_key_value_heads) == ref_k.numpy()).all()
    assert torch.equal(gen.model.model.embed_tokens.weight, sd["model.embed_tokens.weight"])


def test_greedy_continuations_and_logits_match_reference(gen, ref, prompts, continuations):
    """32 greedy tokens on >= 20 prompts: every token is the reference's argmax given the same
    prefix (teacher forcing == the reference's own greedy run), and logits agree within 1e-3."""
    worst_diff, worst_last, smallest_margin = 0.0, 0.0, float("inf")
    with torch.inference_mode():
        for prompt, new in zip(prompts, continuations, strict=True):
            assert len(new) == NEW_TOKENS
            ids = torch.tensor([prompt + new])
            theirs = ref(ids).logits[0, len(prompt) - 1 : -1]  # (32, V): predicts each new token
            ours = gen.model(ids)[0, len(prompt) - 1 : -1]  # (32, V)
            last = (ours[0] - theirs[0]).abs().max().item()  # last prompt position
            worst_last = max(worst_last, last)
            worst_diff = max(worst_diff, (ours - theirs).abs().max().item())
            top2 = theirs.topk(2, dim=-1).values  # (32, 2)
            smallest_margin = min(smallest_margin, (top2[:, 0] - top2[:, 1]).min().item())
            assert theirs.argmax(-1).tolist() == new, f"greedy divergence on prompt {prompt[:8]}"
            assert last < LOGIT_TOL
    log.info(
        "logits: max |diff| last prompt position %.2e, all positions %.2e; "
        "smallest reference top-2 margin %.3g",
        worst_last,
        worst_diff,
        smallest_margin,
    )
    assert worst_diff < LOGIT_TOL


def test_cached_decode_logits_match_reference(gen, ref, prompts, continuations):
    """The KV-cache path itself (prefill + one-token steps) against the reference's logits."""
    worst = 0.0
    with torch.inference_mode():
        for prompt, new in list(zip(prompts, continuations, strict=True))[::10]:
            ids = torch.tensor([prompt + new])
            theirs = ref(ids).logits[0, len(prompt) - 1 :]  # (33, V)
            cache = gen.model.new_cache(ids.shape[1])
            steps = [gen.model(ids[:, : len(prompt)], 0, cache, last_only=True)[0]]
            for pos in range(len(prompt), ids.shape[1]):
                steps.append(gen.model(ids[:, pos : pos + 1], pos, cache)[0])
            ours = torch.cat(steps)  # (33, V)
            worst = max(worst, (ours - theirs).abs().max().item())
    log.info("KV-cache path: max |logit diff| vs reference %.2e", worst)
    assert worst < LOGIT_TOL


def test_reference_generate_agrees(gen, ref, prompts, continuations):
    """transformers' own `generate` (greedy, its cache) on a few prompts: same 32 tokens."""
    for prompt, new in list(zip(prompts, continuations, strict=True))[:3]:
        out = ref.generate(
            torch.tensor([prompt]),
            max_new_tokens=NEW_TOKENS,
            do_sample=False,
            eos_token_id=gen.eos_token_id,
            pad_token_id=gen.eos_token_id,
        )
        theirs = out[0, len(prompt) :].tolist()
        if gen.eos_token_id in theirs:  # the reference stops at EOS; ours ran on past it
            theirs = theirs[: theirs.index(gen.eos_token_id) + 1]
        assert theirs == new[: len(theirs)]


def test_generation_with_cache_equals_without(gen, prompts, continuations):
    for prompt, new in list(zip(prompts, continuations, strict=True))[::6]:
        assert (
            gen.generate(prompt, max_new_tokens=16, stop_at_eos=False, use_cache=False) == new[:16]
        )


def test_sampled_generation_is_seeded(gen, prompts):
    kwargs = {"max_new_tokens": 12, "temperature": 0.9, "top_p": 0.95, "top_k": 50, "seed": 7}
    a = gen.generate(prompts[0], **kwargs)
    assert a == gen.generate(prompts[0], **kwargs)


def test_chat_answer_ends_at_im_end(gen):
    prompt = gen.tokenizer.encode(
        gen.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}])
    )
    events = list(gen.stream(prompt, max_new_tokens=32))
    ids = [t for e in events for t in e.token_ids]
    assert gen.eos_token_id == 2 and ids[-1] == 2
    assert events[-1].finish_reason == "stop"
    assert "Paris" in "".join(e.text for e in events)
    assert events[-1].usage == {
        "prompt_tokens": len(prompt),
        "completion_tokens": len(ids),
        "total_tokens": len(prompt) + len(ids),
        "cached_tokens": 0,  # this generator has no prefix cache
    }


def test_fingerprint(gen):
    fp = gen.fingerprint()
    assert len(fp["gguf_sha256"]) == 64 and fp["gguf_sha256"] == gen.fingerprint()["gguf_sha256"]
    assert (fp["architecture"], fp["n_layers"], fp["vocab_size"], fp["context_length"]) == (
        "llama",
        30,
        49152,
        8192,
    )
    assert fp["quantization"] == "Q4_1" and gen.context_length == 8192

"""Unit tests on a tiny seeded config: RoPE, GQA, the KV cache, random init, weight loading (names,
GGUF, strict errors), quantized layers, config, dequantization.

Follows transformers' `test_modeling_llama.py` (a tiny random config; cache == no cache; the
same weights in `LlamaForCausalLM` give the same logits) and nanoGPT's habit of checking shapes.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from semsearch.decoder.config import DecoderConfig
from semsearch.decoder.generate import load_model
from semsearch.decoder.gguf import GGUFFile, dequantize
from semsearch.decoder.model import DecoderModel
from semsearch.decoder.quantized import Int4Linear, Int8Linear, quantize_linears
from semsearch.decoder.rope import RotaryEmbedding, apply_rope
from semsearch.decoder.weights import (
    GGUF_NAMES,
    WeightsError,
    from_transformers,
    load_weights,
    permute_qk,
    unpermute_qk,
)
from semsearch.paths import gguf_path

TINY = DecoderConfig(
    vocab_size=97,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    rope_theta=10000.0,
    rms_norm_eps=1e-5,
)


def tiny_state(config: DecoderConfig = TINY, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    c = config
    C, D = c.hidden_size, c.head_dim

    def w(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.2

    state = {"model.embed_tokens.weight": w(c.vocab_size, C), "model.norm.weight": 1 + w(C)}
    for i in range(c.num_hidden_layers):
        p = f"model.layers.{i}."
        state |= {
            p + "input_layernorm.weight": 1 + w(C),
            p + "post_attention_layernorm.weight": 1 + w(C),
            p + "self_attn.q_proj.weight": w(c.num_attention_heads * D, C),
            p + "self_attn.k_proj.weight": w(c.num_key_value_heads * D, C),
            p + "self_attn.v_proj.weight": w(c.num_key_value_heads * D, C),
            p + "self_attn.o_proj.weight": w(C, c.num_attention_heads * D),
            p + "mlp.gate_proj.weight": w(c.intermediate_size, C),
            p + "mlp.up_proj.weight": w(c.intermediate_size, C),
            p + "mlp.down_proj.weight": w(C, c.intermediate_size),
        }
    return state


def loaded(
    config: DecoderConfig = TINY, state: dict[str, torch.Tensor] | None = None
) -> DecoderModel:
    """An empty model given `state` (transformers' names) by the loader."""
    model = DecoderModel(config, seed=None)
    load_weights(model, from_transformers(tiny_state(config) if state is None else state, config))
    return model.eval()


def llama_config(c: DecoderConfig, tie: bool = True) -> object:
    transformers = pytest.importorskip("transformers")
    return transformers.LlamaConfig(
        vocab_size=c.vocab_size,
        hidden_size=c.hidden_size,
        intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_hidden_layers,
        num_attention_heads=c.num_attention_heads,
        num_key_value_heads=c.num_key_value_heads,
        max_position_embeddings=c.max_position_embeddings,
        rope_theta=c.rope_theta,
        rms_norm_eps=c.rms_norm_eps,
        tie_word_embeddings=tie,
    )


@pytest.fixture(scope="module")
def model() -> DecoderModel:
    return loaded()


def ids(T: int, B: int = 1, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, TINY.vocab_size, (B, T), generator=torch.Generator().manual_seed(seed))


def test_rope_matches_the_complex_rotation_formula():
    D, theta = 8, 10000.0
    rope = RotaryEmbedding(D, theta, 32)
    x = torch.randn(5, D)
    cos, sin = rope.tables(3, 5)
    got = apply_rope(x, cos, sin)
    for t in range(5):
        for i in range(D // 2):  # pair (i, i + D/2) rotated by angle pos * theta^(-2i/D)
            angle = (3 + t) * theta ** (-2 * i / D)
            z = complex(x[t, i], x[t, i + D // 2]) * complex(math.cos(angle), math.sin(angle))
            assert got[t, i].item() == pytest.approx(z.real, abs=1e-5)
            assert got[t, i + D // 2].item() == pytest.approx(z.imag, abs=1e-5)
    for pos in (0, 3, 31):  # the decode-step matrix form is the same rotation
        c, s = rope.tables(pos, 1)
        torch.testing.assert_close(x @ rope.rotation(pos), apply_rope(x, c, s))
    with pytest.raises(ValueError, match="context length"):
        rope.tables(30, 3)


def test_shapes_and_grouped_query_attention(model):
    c = TINY
    attn = model.model.layers[0].self_attn
    assert attn.qkv_proj.weight.shape == (
        (c.num_attention_heads + 2 * c.num_key_value_heads) * c.head_dim,
        c.hidden_size,
    )
    assert model(ids(7, B=3)).shape == (3, 7, c.vocab_size)
    assert model(ids(7, B=3), last_only=True).shape == (3, 1, c.vocab_size)
    cache = model.new_cache(16, batch_size=3)
    model(ids(5, B=3), 0, cache)
    assert cache.k.shape == (c.num_hidden_layers, 3, c.num_key_value_heads, 16, c.head_dim)
    assert cache.length == 5


def test_attention_equals_explicit_repeat_kv_math(model):
    """Our GQA (no key copies) against the textbook: repeat each kv head n_rep times, mask."""
    c = TINY
    H, KV, D = c.num_attention_heads, c.num_key_value_heads, c.head_dim
    attn = model.model.layers[0].self_attn
    x = torch.randn(2, 6, c.hidden_size)
    qkv = (x @ attn.qkv_proj.weight.T).view(2, 6, H + 2 * KV, D).transpose(1, 2)  # (B, H+2KV, T, D)
    cos, sin = model.rope.tables(0, 6)
    q = apply_rope(qkv[:, :H], cos, sin)
    k = apply_rope(qkv[:, H : H + KV], cos, sin).repeat_interleave(H // KV, dim=1)  # (B, H, T, D)
    v = qkv[:, H + KV :].repeat_interleave(H // KV, dim=1)  # (B, H, T, D)
    scores = q @ k.transpose(-1, -2) / math.sqrt(D)  # (B, H, T, T)
    scores = scores.masked_fill(torch.ones(6, 6).triu(1).bool(), float("-inf"))
    y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 6, H * D)  # (B, T, C)
    torch.testing.assert_close(attn(x, model.rope, 0, None), y @ attn.o_proj.weight.T)


def test_logits_equal_transformers_llama_with_the_same_weights(model):
    transformers = pytest.importorskip("transformers")
    ref = transformers.LlamaForCausalLM(llama_config(TINY)).eval()
    state = tiny_state()
    state["lm_head.weight"] = state["model.embed_tokens.weight"]
    ref.load_state_dict(state, strict=True)
    x = ids(11, B=2)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), ref(x).logits, atol=1e-5, rtol=1e-5)


def test_random_init_is_seeded():
    before = torch.random.get_rng_state()
    a, b, c = (DecoderModel(TINY, seed=s) for s in (0, 0, 1))
    assert torch.equal(torch.random.get_rng_state(), before)  # a generator of its own
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not any(torch.equal(sa[k], sc[k]) for k in sa if sa[k].dim() == 2)
    for name, p in a.named_parameters():  # transformers' Llama init
        if p.dim() == 1:
            assert torch.equal(p, torch.ones_like(p)), name
        else:
            assert abs(p.std().item() - TINY.initializer_range) < 0.004, name
    assert a.lm_head.weight is a.model.embed_tokens.weight  # tied, drawn once
    with torch.inference_mode():
        x = ids(9, B=2)
        logits = a(x)
        cache = a.new_cache(9, batch_size=2)
        steps = [a(x[:, :5], 0, cache)] + [a(x[:, t : t + 1], t, cache) for t in range(5, 9)]
    assert logits.shape == (2, 9, TINY.vocab_size) and logits.isfinite().all()
    torch.testing.assert_close(torch.cat(steps, dim=1), logits, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("tie", [True, False])
def test_parameter_names_are_transformers_names_with_fused_projections(tie):
    """Ours == `LlamaForCausalLM.state_dict()` with q/k/v and gate/up stacked (Phi-3's names)."""
    transformers = pytest.importorskip("transformers")
    config = dataclasses.replace(TINY, tie_word_embeddings=tie)
    ref = transformers.LlamaForCausalLM(llama_config(config, tie))
    theirs = {k: tuple(v.shape) for k, v in from_transformers(ref.state_dict(), config).items()}
    ours = {k: tuple(p.shape) for k, p in DecoderModel(config, seed=None).named_parameters()}
    assert ours == theirs
    assert ("lm_head.weight" in ours) is not tie
    assert ours["model.layers.1.self_attn.qkv_proj.weight"] == (8 * TINY.head_dim, 32)


def test_loader_lists_every_missing_unexpected_and_misshaped_name():
    checkpoint = from_transformers(tiny_state(), TINY)
    del checkpoint["model.layers.1.mlp.down_proj.weight"]
    checkpoint["model.layers.2.mlp.down_proj.weight"] = torch.zeros(32, 48)
    checkpoint["model.norm.weight"] = torch.ones(31)
    checkpoint["model.layers.0.self_attn.qkv_proj.weight"] = torch.zeros(63, 32)
    model = DecoderModel(TINY, seed=None)
    with pytest.raises(WeightsError) as e:
        load_weights(model, checkpoint)
    message = str(e.value)
    assert "1 missing, 1 unexpected, 2 mis-shaped" in message
    for expected in (
        "model.layers.1.mlp.down_proj.weight (32, 48)",
        "model.layers.2.mlp.down_proj.weight (32, 48)",
        "model.norm.weight: checkpoint (31,), model (32,)",
        "model.layers.0.self_attn.qkv_proj.weight: checkpoint (63, 32), model (64, 32)",
    ):
        assert expected in message
    assert all(p.is_meta for p in model.parameters())  # refused before any weight was taken
    head = {"lm_head.weight": torch.zeros(97, 32)}
    with pytest.raises(WeightsError, match=r"(?s)unexpected.*lm_head.weight"):  # tied: no head
        load_weights(model, from_transformers(tiny_state(), TINY) | head)


def test_cache_equals_no_cache(model):
    x = ids(20)
    with torch.inference_mode():
        full = model(x)  # (1, 20, V)
        cache = model.new_cache(20)
        steps = [model(x[:, :8], 0, cache)]  # prefill
        steps += [model(x[:, t : t + 1], t, cache) for t in range(8, 14)]  # decode steps
        steps.append(model(x[:, 14:], 14, cache))  # a chunk past position 0 (masked prefill)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_batch_equals_single(model):
    x = ids(9, B=3)
    with torch.inference_mode():
        batch = model(x)
        for b in range(3):
            torch.testing.assert_close(model(x[b : b + 1])[0], batch[b], atol=1e-5, rtol=1e-5)


def test_cache_misuse_is_refused(model):
    cache = model.new_cache(8)
    with pytest.raises(ValueError, match="start"):
        model(ids(2), 3, cache)
    with pytest.raises(ValueError, match="context length"):
        model.new_cache(65)
    with pytest.raises(ValueError, match="KV cache"):
        model(ids(2), 4)


def q4_1_round(w: torch.Tensor) -> torch.Tensor:
    """w rounded as llama.cpp's Q4_1 stores it: per 32, d = (max - min) / 15, m = min."""
    g = w.reshape(w.shape[0], -1, 32)  # (N, K/32, 32)
    lo, hi = g.amin(-1, keepdim=True), g.amax(-1, keepdim=True)
    d = (hi - lo) / 15
    return (torch.round((g - lo) / d) * d + lo).reshape(w.shape)


QUANT = DecoderConfig(  # int4 needs in_features % 32 and out_features % 16
    vocab_size=96,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
)


@pytest.mark.parametrize("weights", ["int8", "int4"])
def test_quantized_weights_stay_close(weights):
    state = {
        k: q4_1_round(v) if v.ndim == 2 and "embed" not in k else v
        for k, v in tiny_state(QUANT).items()
    }  # as in the GGUF: Q4_1 linear weights
    fp32 = loaded(QUANT, state)
    quant = quantize_linears(loaded(QUANT, state), weights)
    kind = Int8Linear if weights == "int8" else Int4Linear
    assert isinstance(quant.model.layers[0].mlp.down_proj, kind)
    assert isinstance(quant.lm_head, kind) and quant.weights == weights
    assert not any(isinstance(m, torch.nn.Linear) for m in quant.modules())
    x = ids(20)
    with torch.inference_mode():
        a = fp32(x)[:, 17:]  # (1, 3, V)
        cache = quant.new_cache(20)
        quant(x[:, :17], 0, cache)  # prefill: the bf16 copy for int4
        b = torch.cat([quant(x[:, t : t + 1], t, cache) for t in (17, 18, 19)], dim=1)
    top = a.topk(10, dim=-1).indices  # fp32's best: recomputed exactly by the quantized head
    assert (a.gather(-1, top) - b.gather(-1, top)).abs().max() < 0.05 * a.abs().max()
    with pytest.raises(ValueError, match="already quantized"):
        quantize_linears(quant, weights)


def test_int4_recovers_q4_1_codes():
    """Dequantized Q4_1 blocks (x = d * q + m, q in 0..15 spanning min..max) round-trip."""
    g = torch.Generator().manual_seed(3)
    q = torch.randint(0, 16, (16, 64), generator=g)
    q[:, ::32] = 0
    q[:, 1::32] = 15  # llama.cpp's quantizer puts a block's min at 0 and its max at 15
    d = torch.rand(16, 2, generator=g).repeat_interleave(32, dim=1) * 0.1
    m = -torch.rand(16, 2, generator=g).repeat_interleave(32, dim=1)
    w = (d * q + m).to(torch.bfloat16).float()  # bf16-exact scales, as the kernel stores them
    lin = Int4Linear(w)
    x = torch.eye(64)[:8]  # fewer rows than `dense_rows`: the 4-bit kernel
    y = lin(x)
    assert y.dtype == torch.bfloat16 and lin(x[None]).shape == (1, 8, 16)
    torch.testing.assert_close(
        y.float(), (x.bfloat16() @ w.T.bfloat16()).float(), atol=2e-2, rtol=1e-2
    )
    with pytest.raises(ValueError, match="weights"):
        quantize_linears(loaded(), "int3")
    with pytest.raises(ValueError, match="multiple of"):
        Int4Linear(torch.zeros(16, 48))


def write_gguf(path: Path, config: DecoderConfig, state: dict[str, torch.Tensor]) -> None:
    """A llama GGUF as llama.cpp's converter writes one: its tensor names, Q/K rows permuted."""
    gguf = pytest.importorskip("gguf")
    c = config
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(c.num_hidden_layers)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_freq_base(c.rope_theta)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_vocab_size(c.vocab_size)
    gguf_names = {v: k for k, v in GGUF_NAMES.items()}
    for name, t in state.items():
        layer = name.split(".")[2] if name.startswith("model.layers.") else None
        pattern = name.replace(f".{layer}.", ".{i}.", 1) if layer else name
        a = t.numpy()
        if pattern.endswith("q_proj.weight"):
            a = permute_qk(a, c.num_attention_heads)
        elif pattern.endswith("k_proj.weight"):
            a = permute_qk(a, c.num_key_value_heads)
        w.add_tensor(gguf_names[pattern].format(i=layer), np.ascontiguousarray(a))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("weights", ["fp32", "int8", "int4"])
def test_gguf_load_equals_random_init_plus_loaded_weights(tmp_path, weights, tie):
    """`load_model` (empty model, GGUF names, un-permuted Q/K, quantized after) == a seeded
    random model given transformers' tensors, then quantized; fp32 logits == transformers'."""
    state = tiny_state(QUANT)
    if tie:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    else:
        state["lm_head.weight"] = tiny_state(QUANT, seed=1)["model.embed_tokens.weight"]
    gguf_state = {k: v for k, v in state.items() if not (tie and k == "lm_head.weight")}
    write_gguf(tmp_path / "tiny.gguf", QUANT, gguf_state)  # tied: no `output.weight`
    f = GGUFFile(tmp_path / "tiny.gguf")
    config = DecoderConfig.from_gguf(f)  # the GGUF stores eps as float32
    assert config == dataclasses.replace(
        QUANT, rms_norm_eps=config.rms_norm_eps, tie_word_embeddings=tie
    )
    ours = load_model(f, weights)
    expected = DecoderModel(config, seed=0)
    load_weights(expected, from_transformers(state, config))
    quantize_linears(expected, weights).eval()
    a, b = ours.state_dict(keep_vars=True), expected.state_dict(keep_vars=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for (name, x), (_, y) in zip(ours.named_buffers(), expected.named_buffers(), strict=True):
        assert torch.equal(x, y), name  # the quantized layers' codes, scales, bf16 copies
    x = ids(12)
    with torch.inference_mode():
        torch.testing.assert_close(ours(x), expected(x), atol=0, rtol=0)
        if weights == "fp32":
            transformers = pytest.importorskip("transformers")
            ref = transformers.LlamaForCausalLM(llama_config(config, tie)).eval()
            ref.load_state_dict(state, strict=True)
            torch.testing.assert_close(ours(x), ref(x).logits, atol=1e-5, rtol=1e-5)


def test_gguf_load_names_what_the_file_lacks(tmp_path):
    state = tiny_state(QUANT)
    del state["model.layers.1.self_attn.k_proj.weight"]
    write_gguf(tmp_path / "tiny.gguf", QUANT, state)
    with pytest.raises(WeightsError) as e:
        load_model(GGUFFile(tmp_path / "tiny.gguf"))
    message = str(e.value)
    assert "tiny.gguf does not match the model (1 missing, 2 unexpected)" in message
    for name in ("1.self_attn.qkv_proj.weight", "1.self_attn.q_proj", "1.self_attn.v_proj"):
        assert f"model.layers.{name}" in message


def test_config_validation():
    assert TINY.head_dim == 8 and TINY.n_rep == 2
    with pytest.raises(ValueError, match="multiple of num_key_value_heads"):
        DecoderConfig(num_attention_heads=9, num_key_value_heads=2)
    with pytest.raises(ValueError, match="divisible"):
        DecoderConfig(hidden_size=100, num_attention_heads=9)
    with pytest.raises(ValueError, match="vocab_size"):
        DecoderConfig(vocab_size=0)


def test_qk_permutation_round_trips():
    w = np.arange(4 * 8 * 3, dtype=np.float32).reshape(4 * 8, 3)  # 4 heads of head_dim 8
    p = permute_qk(w, 4)
    assert (unpermute_qk(p, 4) == w).all() and not (p == w).all()
    # llama.cpp interleaves the halves of each head: rows 0, 4, 1, 5, 2, 6, 3, 7
    assert p[:8, 0].tolist() == [w[i, 0] for i in (0, 4, 1, 5, 2, 6, 3, 7)]


def test_dequantization_matches_gguf_package():
    gguf = pytest.importorskip("gguf")
    if not gguf_path().is_file():
        pytest.skip("run `make setup` first")

    tensors = GGUFFile(gguf_path()).tensors()
    for name in ("blk.0.attn_q.weight", "token_embd.weight", "blk.0.attn_norm.weight"):
        t = tensors[name]
        expected = gguf.quants.dequantize(t.data, gguf.GGMLQuantizationType[t.qtype])
        np.testing.assert_array_equal(t.to_numpy(), expected.reshape(t.shape))
    assert {tensors[n].qtype for n in tensors} == {"Q4_1", "Q8_0", "F32"}
    half = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float16)
    np.testing.assert_array_equal(
        dequantize(half.view(np.uint8), "F16", (4, 64)), half.astype(np.float32)
    )
    with pytest.raises(ValueError, match="not supported"):
        dequantize(half, "Q5_K", (4, 64))


def test_config_from_the_gguf():
    if not gguf_path().is_file():
        pytest.skip("run `make setup` first")

    c = DecoderConfig.from_gguf(GGUFFile(gguf_path()))
    assert (c.num_hidden_layers, c.hidden_size, c.intermediate_size) == (30, 576, 1536)
    assert (c.num_attention_heads, c.num_key_value_heads, c.head_dim) == (9, 3, 64)
    assert (c.rope_theta, c.vocab_size, c.max_position_embeddings) == (100000.0, 49152, 8192)
    assert c.rms_norm_eps == pytest.approx(1e-5) and c.tie_word_embeddings
    assert c.eos_token_id == 2


@pytest.mark.parametrize("weights", ["int8", "int4"])
def test_quantized_head_recomputes_the_top_logits_exactly(weights):
    config = dataclasses.replace(QUANT, num_hidden_layers=1)
    model = quantize_linears(DecoderModel(config, seed=0), weights).requires_grad_(False)
    h = torch.randn(2, config.hidden_size)
    exact = h @ model.model.embed_tokens.weight.T  # (2, V): the fp32 tied head
    got = model._head(h)
    top = model.lm_head(h).float().topk(model.rerank_top, dim=-1).indices  # the candidates
    torch.testing.assert_close(got.gather(1, top), exact.gather(1, top))
    assert torch.equal(got.argmax(-1), exact.argmax(-1))

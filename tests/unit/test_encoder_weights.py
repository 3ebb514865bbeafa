"""Strict checkpoint loading: every missing, unexpected and mis-shaped key listed in one error."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from semsearch.encoder.config import BertConfig
from semsearch.encoder.model import BertModel
from semsearch.encoder.model_files import file_sha256
from semsearch.encoder.weights import WeightsError, load_weights

TINY = BertConfig(
    vocab_size=50,
    hidden_size=16,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=24,
    max_position_embeddings=32,
)


def _random_state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {k: torch.randn_like(v) for k, v in BertModel(TINY).state_dict().items()}


def _save(tensors: dict[str, torch.Tensor], path) -> str:
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return str(path)


def test_loads_exact_names(tmp_path):
    state = _random_state()
    model = BertModel(TINY)
    load_weights(model, _save(state, tmp_path / "model.safetensors"))
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, state[name]), name


def test_accepts_bert_prefix_and_ignores_unused_keys(tmp_path):
    state = _random_state(1)
    renamed = {f"bert.{k}": v for k, v in state.items()}
    renamed["bert.pooler.dense.weight"] = torch.zeros(16, 16)
    renamed["bert.pooler.dense.bias"] = torch.zeros(16)
    renamed["bert.embeddings.position_ids"] = torch.arange(32)[None, :]
    renamed["cls.predictions.bias"] = torch.zeros(50)
    model = BertModel(TINY)
    load_weights(model, _save(renamed, tmp_path / "prefixed.safetensors"))
    key = "encoder.layer.1.attention.self.query.weight"
    assert torch.equal(model.state_dict()[key], state[key])


def test_fp16_checkpoint_is_upcast(tmp_path):
    state = {k: v.half() for k, v in _random_state(2).items()}
    model = BertModel(TINY)
    load_weights(model, _save(state, tmp_path / "half.safetensors"))
    w = model.embeddings.word_embeddings.weight
    assert w.dtype == torch.float32
    assert torch.equal(w, state["embeddings.word_embeddings.weight"].float())


def test_every_problem_is_listed_in_one_error(tmp_path):
    state = _random_state()
    del state["encoder.layer.0.attention.self.key.bias"]
    del state["encoder.layer.1.output.LayerNorm.weight"]
    state["encoder.layer.0.attention.self.rotary.weight"] = torch.zeros(3)
    state["encoder.layer.2.output.dense.weight"] = torch.zeros(16, 24)
    state["encoder.layer.1.intermediate.dense.weight"] = torch.zeros(25, 16)
    state["embeddings.word_embeddings.weight"] = torch.zeros(51, 16)
    path = _save(state, tmp_path / "bad.safetensors")
    with pytest.raises(WeightsError) as info:
        load_weights(BertModel(TINY), path)
    message = str(info.value)
    assert "2 missing, 2 unexpected, 2 mis-shaped" in message
    for needle in (
        "encoder.layer.0.attention.self.key.bias (16,)",
        "encoder.layer.1.output.LayerNorm.weight (16,)",
        "encoder.layer.0.attention.self.rotary.weight (3,)",
        "encoder.layer.2.output.dense.weight (16, 24)",
        "encoder.layer.1.intermediate.dense.weight: checkpoint (25, 16), model (24, 16)",
        "embeddings.word_embeddings.weight: checkpoint (51, 16), model (50, 16)",
        "bad.safetensors",
        "config.json",
    ):
        assert needle in message, needle


def test_key_with_and_without_prefix_is_a_duplicate(tmp_path):
    state = _random_state()
    state["bert.embeddings.LayerNorm.bias"] = torch.zeros(16)
    with pytest.raises(WeightsError, match=r"(?s)duplicated.*embeddings\.LayerNorm\.bias"):
        load_weights(BertModel(TINY), _save(state, tmp_path / "dup.safetensors"))


def test_integer_tensor_for_a_parameter_is_refused(tmp_path):
    state = _random_state()
    state["embeddings.LayerNorm.bias"] = torch.zeros(16, dtype=torch.int64)
    with pytest.raises(WeightsError, match="not floating point"):
        load_weights(BertModel(TINY), _save(state, tmp_path / "int.safetensors"))


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_weights(BertModel(TINY), tmp_path / "nope.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsError, match="junk.safetensors"):
        load_weights(BertModel(TINY), junk)


def test_file_sha256(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"abc")
    expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert file_sha256(path) == expected

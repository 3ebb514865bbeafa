"""BERT encoder hyper-parameters, with Hugging Face's `config.json` field names.

Follows nanoGPT's `GPTConfig` and transformers' `BertConfig`: one frozen dataclass, derived sizes
computed once, every inconsistency reported as a `ValueError` that names the values.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# The activations and position schemes this from-scratch BERT implements; anything else is refused
# rather than silently computed wrong.
SUPPORTED_ACTIVATIONS = ("gelu",)
SUPPORTED_POSITION_EMBEDDINGS = ("absolute",)


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    hidden_act: str = "gelu"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    position_embedding_type: str = "absolute"

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
            "type_vocab_size",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"BertConfig.{name} must be a positive int, got {value!r}")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"BertConfig.hidden_size ({self.hidden_size}) must be divisible by "
                f"num_attention_heads ({self.num_attention_heads})"
            )
        if self.hidden_act not in SUPPORTED_ACTIVATIONS:
            raise ValueError(
                f"BertConfig.hidden_act {self.hidden_act!r} is not supported; "
                f"supported: {', '.join(SUPPORTED_ACTIVATIONS)}"
            )
        if self.position_embedding_type not in SUPPORTED_POSITION_EMBEDDINGS:
            raise ValueError(
                f"BertConfig.position_embedding_type {self.position_embedding_type!r} is not "
                f"supported; supported: {', '.join(SUPPORTED_POSITION_EMBEDDINGS)}"
            )
        if not isinstance(self.layer_norm_eps, int | float) or not self.layer_norm_eps > 0:
            raise ValueError(f"BertConfig.layer_norm_eps must be > 0, got {self.layer_norm_eps!r}")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(
                f"BertConfig.pad_token_id ({self.pad_token_id}) must be in [0, vocab_size="
                f"{self.vocab_size})"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BertConfig:
        """Build from a `config.json` dict, ignoring fields the model does not use (dropout...)."""
        known = {f.name for f in dataclasses.fields(cls)}
        ignored = sorted(k for k in data if k not in known)
        if ignored:
            logger.debug("BertConfig ignores config fields: %s", ", ".join(ignored))
        model_type = data.get("model_type", "bert")
        if model_type != "bert":
            raise ValueError(f"expected a BERT config (model_type 'bert'), got {model_type!r}")
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_json_file(cls, path: str | Path) -> BertConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from e
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
        try:
            return cls.from_dict(data)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e

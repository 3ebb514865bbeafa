"""The decoder's hyperparameters, with Hugging Face `LlamaConfig` field names.

Follows transformers' `LlamaConfig` (names, `head_dim` derived once) and nanoGPT's `GPTConfig`
(a frozen dataclass); `from_gguf` reads llama.cpp's metadata keys (`llama.block_count`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from semsearch.decoder.gguf import GGUFFile


@dataclass(frozen=True)
class DecoderConfig:
    vocab_size: int = 49152
    hidden_size: int = 576
    intermediate_size: int = 1536
    num_hidden_layers: int = 30
    num_attention_heads: int = 9
    num_key_value_heads: int = 3
    head_dim: int = 0  # 0: derived as hidden_size // num_attention_heads
    max_position_embeddings: int = 8192
    rope_theta: float = 100000.0
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = True
    bos_token_id: int = 1
    eos_token_id: int = 2
    initializer_range: float = 0.02  # std of random init (`DecoderModel.init_weights`)

    def __post_init__(self) -> None:
        if self.head_dim == 0:
            if self.hidden_size % self.num_attention_heads:
                raise ValueError(
                    f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                    f"({self.num_attention_heads}) when head_dim is not given"
                )
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_attention_heads)
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even for RoPE, got {self.head_dim}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads}) for grouped-query attention"
            )
        for name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "max_position_embeddings",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.rope_theta <= 0 or self.rms_norm_eps <= 0 or self.initializer_range <= 0:
            raise ValueError(
                f"rope_theta, rms_norm_eps and initializer_range must be positive, got "
                f"{self.rope_theta}, {self.rms_norm_eps}, {self.initializer_range}"
            )

    @property
    def n_rep(self) -> int:
        """Query heads per key/value head."""
        return self.num_attention_heads // self.num_key_value_heads

    @classmethod
    def from_gguf(cls, f: GGUFFile) -> DecoderConfig:
        """Read the config from llama.cpp's metadata keys; refuse anything but `llama`."""
        arch = f.metadata("general.architecture")
        if arch != "llama":
            raise ValueError(f"unsupported GGUF architecture {arch!r}; this decoder runs 'llama'")

        def need(key: str) -> object:
            value = f.metadata(f"{arch}.{key}")
            if value is None:
                raise ValueError(f"GGUF metadata lacks '{arch}.{key}' ({f.path})")
            return value

        tokens = f.metadata("tokenizer.ggml.tokens") or []
        n_heads = int(need("attention.head_count"))
        hidden = int(need("embedding_length"))
        rope_dim = f.metadata(f"{arch}.rope.dimension_count")
        scaling = f.metadata(f"{arch}.rope.scaling.type")
        if scaling not in (None, "none"):
            raise ValueError(f"RoPE scaling {scaling!r} is not supported")
        return cls(
            vocab_size=int(f.metadata(f"{arch}.vocab_size") or len(tokens)),
            hidden_size=hidden,
            intermediate_size=int(need("feed_forward_length")),
            num_hidden_layers=int(need("block_count")),
            num_attention_heads=n_heads,
            num_key_value_heads=int(f.metadata(f"{arch}.attention.head_count_kv") or n_heads),
            head_dim=int(rope_dim) if rope_dim else hidden // n_heads,
            max_position_embeddings=int(need("context_length")),
            rope_theta=float(f.metadata(f"{arch}.rope.freq_base") or 10000.0),
            rms_norm_eps=float(need("attention.layer_norm_rms_epsilon")),
            tie_word_embeddings="output.weight" not in f.tensors(),
            bos_token_id=int(f.metadata("tokenizer.ggml.bos_token_id") or 1),
            eos_token_id=int(f.metadata("tokenizer.ggml.eos_token_id") or 2),
        )

"""The from-scratch Llama decoder (SmolLM2-135M-Instruct from a GGUF file).

`load_generator` is the entry point (see /shared/API.md); torch and the model code are imported
only when it is called, so `import decoder` stays cheap for the service and the CLI.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from decoder.generate import Generator, StreamEvent

__all__ = ["DEFAULT_GGUF", "Generator", "StreamEvent", "load_generator"]

DEFAULT_GGUF = Path(__file__).resolve().parents[1] / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def load_generator(gguf_path: str | Path | None = None, threads: int | None = None,
                   weights: str = "fp32", pre_tokenizer: str | None = None) -> Generator:
    """Load the decoder. `gguf_path` None = the bundled SmolLM2 GGUF under models/.

    `threads` sets torch's intra-op threads (process-wide) when given. `weights`: "fp32" (the
    dequantized GGUF weights; logits equal transformers'), "int4" (the GGUF's 4-bit codes in
    4-bit matmuls, bf16 activations: ~3x faster decode, greedy output may differ where fp32's
    top-2 logits are close) or "int8" (weight-only int8). `pre_tokenizer`: None = from the
    GGUF's `tokenizer.ggml.pre` as llama.cpp maps it ("smollm": digits split off first), or
    "gpt2" for what transformers' GGUF conversion builds (see `decoder.bpe`)."""
    path = Path(gguf_path) if gguf_path is not None else DEFAULT_GGUF
    if not path.is_file():
        raise FileNotFoundError(
            f"decoder weights not found at {path}; run `make setup` to fetch "
            "SmolLM2-135M-Instruct.Q4_1.gguf into models/"
        )
    from decoder.generate import load

    return load(str(path), threads=threads, weights=weights, pre_tokenizer=pre_tokenizer)


def __getattr__(name: str) -> object:
    if name in ("Generator", "StreamEvent"):
        from decoder import generate

        return getattr(generate, name)
    raise AttributeError(f"module 'decoder' has no attribute {name!r}")

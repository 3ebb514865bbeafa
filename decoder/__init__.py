"""The from-scratch Llama decoder (SmolLM2-135M-Instruct from a GGUF file).

`load_generator` is the entry point (see docs/API.md); torch and the model code are imported
only when it is called, so `import semsearch.decoder` stays cheap for the service and the CLI.

Prompts: `Generator.chat_ids(messages)` for chat and RAG prompts (only the template's markers
become control tokens; special-token text in a message stays text), and
`Generator.tokenizer.encode(prompt)` for a raw prompt the caller owns whole (special-token text is
parsed, as llama.cpp's /completion does). `SamplingParams` validates sampling values as
`Generator.stream` will.

The parts `load_generator` composes: `decoder.model.DecoderModel(config)` (the Llama math, random
weights from a seed), `decoder.weights` (checkpoint names, the GGUF's tensors, a strict loader) and
`decoder.quantized` (int8 / int4 layers swapped in for the `nn.Linear`s).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from semsearch import paths

if TYPE_CHECKING:
    from semsearch.decoder.bpe import BPETokenizer, ChatTemplate
    from semsearch.decoder.generate import Generator, StreamEvent
    from semsearch.decoder.sampling import SAMPLING_EPS, SamplingParams

__all__ = [
    "SAMPLING_EPS",
    "BPETokenizer",
    "ChatTemplate",
    "Generator",
    "SamplingParams",
    "StreamEvent",
    "load_generator",
]

# Imported on first use: generate and sampling pull in torch.
_LAZY = {
    "Generator": "generate",
    "StreamEvent": "generate",
    "BPETokenizer": "bpe",
    "ChatTemplate": "bpe",
    "SamplingParams": "sampling",
    "SAMPLING_EPS": "sampling",
}


def load_generator(
    gguf_path: str | Path | None = None,
    threads: int | None = None,
    weights: str = "fp32",
    pre_tokenizer: str | None = None,
    prefix_cache_mb: float = 0,
) -> Generator:
    """Load the decoder. `gguf_path` None = SmolLM2's GGUF in the models directory
    (`semsearch.paths.gguf_path()`).

    `threads` sets torch's intra-op threads (process-wide) when given. `weights`: "fp32" (the
    dequantized GGUF weights; logits equal transformers'), "int4" (the GGUF's 4-bit codes in
    4-bit matmuls, bf16 activations: ~3x faster decode, greedy output may differ where fp32's
    top-2 logits are close) or "int8" (weight-only int8). `pre_tokenizer`: None = from the
    GGUF's `tokenizer.ggml.pre` as llama.cpp maps it ("smollm": digits split off first), or
    "gpt2" for what transformers' GGUF conversion builds (see `decoder.bpe`).
    `prefix_cache_mb`: memory for the keys and values of prompt beginnings that later prompts
    reuse (`decoder.prefix_cache`); 0 = off."""
    path = Path(gguf_path) if gguf_path is not None else paths.gguf_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"decoder weights not found at {path}; `make setup` fetches {paths.GGUF_NAME} into "
            f"the repository's models/, or set {paths.MODELS_DIR_ENV} or SEMSEARCH_GGUF_PATH"
        )
    from semsearch.decoder.generate import load

    return load(
        str(path),
        threads=threads,
        weights=weights,
        pre_tokenizer=pre_tokenizer,
        prefix_cache_bytes=int(prefix_cache_mb * 2**20),
    )


def __getattr__(name: str) -> object:
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

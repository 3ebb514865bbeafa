"""What the service needs from its models: the interfaces its seams are typed with.

Defined here, by the consumer (PEP 544 structural typing): the encoder's backends (`TorchEmbedder`,
`OnnxEmbedder`) and the decoder's `Generator` satisfy them without importing the service, and a
test double needs these members and nothing more. Data members are read-only properties, so a
frozen dataclass field or a plain attribute satisfies them alike.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from semsearch.encoder.wordpiece import WordPieceTokenizer


@runtime_checkable
class Embedder(Protocol):
    """A sentence encoder as the embedding engine drives it: WordPiece pre-processing on the
    request's side, one padded batch through `encode_batch_arrays` on the batcher's thread."""

    @property
    def backend(self) -> str: ...  # "torch" | "onnx" | "onnx-int8"

    @property
    def dim(self) -> int: ...

    @property
    def max_length(self) -> int: ...  # tokens per input, [CLS] and [SEP] included

    @property
    def prompts(self) -> Mapping[str, str]: ...  # `prompt_name` -> the text put before an input

    # The concrete tokenizer: `/tokenize` publishes its pieces and offsets, `/decode` inverts
    # them, and its encodings (or a client's token ids, wrapped as encodings) go from
    # `encode_batch` through the batcher to `pad` unchanged.
    @property
    def tokenizer(self) -> WordPieceTokenizer: ...

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the vectors (JSON): a collection refuses an encoder with another."""
        ...

    def encode_batch_arrays(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        token_type_ids: np.ndarray | None = None,
        normalize: bool = True,
    ) -> np.ndarray:
        """Padded int64 (B, T) arrays in, (B, dim) float32 sentence vectors out."""
        ...


@runtime_checkable
class PromptTokenizer(Protocol):
    def encode(self, text: str) -> list[int]:
        """A raw prompt to ids, special-token text parsed (the caller owns the whole prompt)."""
        ...


@runtime_checkable
class StreamEvent(Protocol):
    """One step of a generation: new final text; the last also says why it ended, and usage."""

    @property
    def text(self) -> str: ...

    @property
    def finish_reason(self) -> str | None: ...  # "stop" | "length" on the last event

    @property
    def usage(self) -> dict[str, int] | None: ...  # prompt/completion/total tokens, last event


@runtime_checkable
class TextGenerator(Protocol):
    """A decoder as the generation engine drives it, on one of its worker threads."""

    @property
    def context_length(self) -> int: ...

    @property
    def tokenizer(self) -> PromptTokenizer: ...

    def chat_ids(
        self, messages: list[dict[str, str]], add_generation_prompt: bool = True
    ) -> list[int]:
        """Chat messages through the model's template; content stays text (no control tokens)."""
        ...

    def fingerprint(self) -> dict[str, Any]: ...

    def stream(
        self,
        prompt_ids: Sequence[int],
        max_new_tokens: int = 32,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int = 0,
        repetition_penalty: float = 1.0,
        stop: str | Sequence[str | int] | None = None,
        seed: int | None = None,
    ) -> Generator[StreamEvent, None, None]:
        """One event per new token. Closing the generator early stops the generation and frees
        its cache (the engine does when the client leaves)."""
        ...

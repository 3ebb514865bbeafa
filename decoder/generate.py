"""Generation: prefill, one-token decode steps, sampling, stop conditions, streaming text deltas.

Follows transformers' `generate` for the contract (new token ids; greedy at temperature 0; stop at
the end-of-sequence id, which is included in the returned ids; `max_new_tokens`) and gpt-fast's
`generate.py` for the loop (a preallocated cache, one token in, last-position logits out).

Streaming yields one `StreamEvent` per generated token. Its `text` holds only text that is final:
an incomplete UTF-8 character, or a tail that could still become a stop string, is held back until
it is resolved, so the concatenated deltas always equal the final text. The last event carries
`finish_reason` ("stop": a stop string, stop id or EOS; "length": `max_new_tokens` or the context
is used up) and `usage`. Text from a stop string onwards is never emitted.
"""

from __future__ import annotations

import collections.abc
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from semsearch.decoder.bpe import IM_START, BPETokenizer, ChatTemplate
from semsearch.decoder.config import DecoderConfig
from semsearch.decoder.gguf import GGUFFile
from semsearch.decoder.heap import release_freed_heap
from semsearch.decoder.kv_cache import KVCache
from semsearch.decoder.model import DecoderModel
from semsearch.decoder.prefix_cache import PrefixCache, split_points
from semsearch.decoder.quantized import WEIGHT_FORMATS, quantize_linears
from semsearch.decoder.sampling import SamplingParams, next_token
from semsearch.decoder.weights import load_gguf_weights

logger = logging.getLogger(__name__)

WEIGHT_DTYPES = {
    "fp32": "float32",
    "int8": "int8 weights (per row), bf16 activations; top-64 logits recomputed in fp32",
    "int4": "4-bit weights (the GGUF's Q4_1 codes), bf16 activations and prefill weights; "
    "top-64 logits recomputed in fp32",
}


@dataclass
class StreamEvent:
    text: str  # new final text; may be "" while a character or a possible stop string is pending
    token_ids: list[int]
    finish_reason: str | None = None  # None until the last event, then "stop" | "length"
    # On the last event: prompt/completion/total tokens, and cached_tokens: the prompt's tokens
    # whose keys and values came from the prefix cache
    usage: dict[str, int] | None = None


def _split_stop(stop: str | Sequence[str | int] | None) -> tuple[list[str], set[int]]:
    if stop is None:
        return [], set()
    items = [stop] if isinstance(stop, str) else list(stop)
    strings = [s for s in items if isinstance(s, str)]
    ids = {s for s in items if isinstance(s, int) and not isinstance(s, bool)}
    if len(strings) + len(ids) != len(items) or any(s == "" for s in strings):
        raise ValueError(f"stop must be non-empty strings and/or token ids, got {stop!r}")
    return strings, ids


def _held_back(text: str, stops: list[str]) -> int:
    """Length of the longest tail of `text` that is a proper prefix of some stop string."""
    best = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:k]):
                best = k
                break
    return best


class Generator:
    """A loaded model and tokenizer behind `generate` / `stream` (see API.md)."""

    def __init__(
        self,
        model: DecoderModel,
        tokenizer: BPETokenizer,
        chat: ChatTemplate,
        gguf: GGUFFile,
        prefix_cache_bytes: int = 0,
    ) -> None:
        """`prefix_cache_bytes` > 0 keeps that much of recent prompts' keys and values for the
        prompts that begin alike (`decoder.prefix_cache`); 0 turns the prefix cache off."""
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.chat = chat
        self.config: DecoderConfig = model.config
        self._gguf = gguf
        self._file_info = {
            "architecture": gguf.metadata("general.architecture"),
            "quantization": gguf.file_type(),
        }
        self._caches: list[KVCache] = []
        self._lock = threading.Lock()
        self.prefix_cache = PrefixCache(prefix_cache_bytes) if prefix_cache_bytes > 0 else None
        # Prefills split at message starts, where a chat prompt's reusable prefixes end
        self._message_start = tokenizer.special_tokens.get(IM_START)

    @property
    def eos_token_id(self) -> int:
        return self.config.eos_token_id

    @property
    def context_length(self) -> int:
        return self.config.max_position_embeddings

    def apply_chat_template(
        self, messages: list[dict[str, str]], add_generation_prompt: bool = True
    ) -> str:
        """The chat prompt as text. `tokenizer.encode` of it turns special-token text inside a
        message into control tokens; use `chat_ids` for prompts built from untrusted text."""
        return self.chat.render(messages, add_generation_prompt)

    def chat_ids(
        self, messages: list[dict[str, str]], add_generation_prompt: bool = True
    ) -> list[int]:
        """The chat prompt as ids, with only the template's own markers as control tokens.

        Special-token text in a message's content (a user's `<|im_end|>\\n<|im_start|>system`, or
        the same inside a retrieved document) is encoded as plain text, so it cannot close the turn
        or forge a system message. Equal to `tokenizer.encode(apply_chat_template(messages))`
        when no content or role holds special-token text. Raises ValueError on a message without
        a string role and content, or a role with a line break or special-token text."""
        segments = self.chat.render_segments(messages, add_generation_prompt)
        return self.tokenizer.encode_segments(segments)

    def fingerprint(self) -> dict[str, Any]:
        c = self.config
        return {
            "gguf_sha256": self._gguf.sha256(),
            "gguf_file": self._gguf.path.name,
            "architecture": self._file_info["architecture"],
            "n_layers": c.num_hidden_layers,
            "vocab_size": c.vocab_size,
            "context_length": c.max_position_embeddings,
            "quantization": self._file_info["quantization"],
            "weights": self.model.weights,
            "dtype": WEIGHT_DTYPES[self.model.weights],
            "pre_tokenizer": self.tokenizer.pre,
        }

    def generate(
        self,
        prompt_ids: Sequence[int],
        max_new_tokens: int = 32,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int = 0,
        repetition_penalty: float = 1.0,
        stop: str | Sequence[str | int] | None = None,
        seed: int | None = None,
        stop_at_eos: bool = True,
        use_cache: bool = True,
    ) -> list[int]:
        """New token ids; the EOS or stop id that ended generation is included, and so is the
        token that completed a stop string. Arguments as `stream`."""
        events = self.stream(
            prompt_ids,
            max_new_tokens,
            temperature,
            top_p,
            top_k,
            repetition_penalty,
            stop,
            seed,
            stop_at_eos,
            use_cache,
        )
        return [t for event in events for t in event.token_ids]

    # -- the loop -------------------------------------------------------------------------------

    def _take_cache(self, max_len: int) -> KVCache:
        c = self.config
        with self._lock:
            for i in reversed(range(len(self._caches))):  # the smallest that fits
                cache = self._caches[i]
                if cache.fits(
                    c.num_hidden_layers, c.num_key_value_heads, c.head_dim, max_len, 1, cache.dtype
                ):
                    return self._caches.pop(i)
        return self.model.new_cache(max_len)

    def _give_cache(self, cache: KVCache) -> None:
        """Keep finished caches for reuse: the two largest (concurrent streams take their own)."""
        cache.reset()
        with self._lock:
            self._caches.append(cache)
            self._caches.sort(key=lambda c: c.max_len, reverse=True)
            del self._caches[2:]

    def _prefill(
        self, prompt: list[int], seq: torch.Tensor, cache: KVCache
    ) -> tuple[torch.Tensor, int]:
        """Run the prompt into `cache`: logits (1, 1, V) after its last token, and how many of its
        tokens were taken from the prefix cache instead of computed."""
        n = len(prompt)
        if self.prefix_cache is None:
            return self.model(seq[None, :n], 0, cache, last_only=True), 0
        points = split_points(prompt, self._message_start)
        reused = self.prefix_cache.restore(prompt, points, cache)
        start = reused
        for end in [p for p in points if p > start]:  # the same chunks, cached or not
            self.model.extend(seq[None, start:end], start, cache)
            start = end
        logits = self.model(seq[None, start:n], start, cache, last_only=True)
        self.prefix_cache.store(prompt, points, cache)
        return logits, reused

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
        stop_at_eos: bool = True,
        use_cache: bool = True,
    ) -> collections.abc.Generator[StreamEvent, None, None]:
        """Generate from `prompt_ids`, yielding one `StreamEvent` per new token.

        temperature 0 = greedy, and so is any below `sampling.SAMPLING_EPS` (top_p, top_k and seed
        then do nothing); `stop`: strings and/or token ids; `seed` None = fresh entropy, else an
        int in [0, 2**64); `use_cache=False` recomputes the whole sequence every step (for tests).
        Raises ValueError on an empty or out-of-vocabulary prompt, a
        prompt that fills the context, or invalid sampling values."""
        params = SamplingParams(temperature, top_p, top_k, repetition_penalty, seed)
        stop_strings, stop_ids = _split_stop(stop)
        if stop_at_eos:
            stop_ids.add(self.eos_token_id)
        prompt = [int(t) for t in prompt_ids]
        n_prompt = len(prompt)
        if n_prompt == 0:
            raise ValueError("prompt_ids is empty; give at least one token")
        if min(prompt) < 0 or max(prompt) >= self.config.vocab_size:
            raise ValueError(f"prompt ids must be in [0, {self.config.vocab_size})")
        if n_prompt >= self.context_length:
            raise ValueError(
                f"prompt of {n_prompt} tokens leaves no room in the context of "
                f"{self.context_length}"
            )
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        budget = min(max_new_tokens, self.context_length - n_prompt)
        usage = {
            "prompt_tokens": n_prompt,
            "completion_tokens": 0,
            "total_tokens": n_prompt,
            "cached_tokens": 0,
        }
        if budget == 0:
            yield StreamEvent("", [], "length", usage)
            return

        rng = params.torch_generator()
        seq = torch.tensor(prompt + [0] * budget, dtype=torch.long)  # (n_prompt + budget,)
        detok = self.tokenizer.stream_decoder()
        pending = ""  # decoded text not yet emitted
        cache = self._take_cache(n_prompt + budget) if use_cache else None
        try:
            with torch.inference_mode():
                if cache is not None:
                    logits, usage["cached_tokens"] = self._prefill(prompt, seq, cache)  # (1, 1, V)
                for step in range(budget):
                    n = n_prompt + step
                    if cache is None:
                        logits = self.model(seq[None, :n], last_only=True)  # (1, 1, V)
                    elif step > 0:
                        logits = self.model(seq[None, n - 1 : n], n - 1, cache, last_only=True)
                    seen = seq[:n] if params.repetition_penalty != 1.0 else None
                    tok = next_token(logits[0, -1], params, rng, seen)
                    seq[n] = tok
                    usage["completion_tokens"] = step + 1
                    usage["total_tokens"] = n + 1
                    if tok in stop_ids:
                        yield StreamEvent(pending + detok.flush(), [tok], "stop", usage)
                        return
                    pending += detok.push(tok)
                    hit = [i for i in (pending.find(s) for s in stop_strings) if i >= 0]
                    if hit:
                        yield StreamEvent(pending[: min(hit)], [tok], "stop", usage)
                        return
                    if step == budget - 1:
                        yield StreamEvent(pending + detok.flush(), [tok], "length", usage)
                        return
                    keep = _held_back(pending, stop_strings)
                    cut = len(pending) - keep
                    yield StreamEvent(pending[:cut], [tok])
                    pending = pending[cut:]
        finally:
            if cache is not None:
                self._give_cache(cache)


def load(
    gguf_path: str,
    threads: int | None = None,
    weights: str = "fp32",
    pre_tokenizer: str | None = None,
    prefix_cache_bytes: int = 0,
) -> Generator:
    """Open the GGUF, build tokenizer, chat template and model (see `decoder.load_generator`)."""
    if weights not in WEIGHT_FORMATS:
        raise ValueError(f"weights must be one of {WEIGHT_FORMATS}, got {weights!r}")
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    f = GGUFFile(gguf_path)
    if f.metadata("tokenizer.ggml.model") != "gpt2":
        raise ValueError(
            f"{gguf_path}: tokenizer {f.metadata('tokenizer.ggml.model')!r} is not "
            "byte-level BPE ('gpt2'); only byte-level BPE is supported"
        )
    pre = pre_tokenizer or ("smollm" if f.metadata("tokenizer.ggml.pre") == "smollm" else "gpt2")
    tokenizer = gguf_tokenizer(f, pre, unknown_token_id(f))
    chat = ChatTemplate(f.metadata("tokenizer.chat_template"), tokenizer.special_tokens)
    model = load_model(f, weights)
    generator = Generator(model, tokenizer, chat, f, prefix_cache_bytes)
    f.close()  # everything is read; the memory map would only hold pages resident
    release_freed_heap()
    logger.info(
        "loaded %s: %d layers, %s weights, pre-tokenizer %s",
        f.path.name,
        model.config.num_hidden_layers,
        weights,
        pre,
    )
    return generator


def load_model(f: GGUFFile, weights: str = "fp32") -> DecoderModel:
    """The GGUF's Llama: the config from its metadata, an empty model (meta device) given the
    fp32 weights strictly, one tensor dequantized at a time, then its linear layers quantized to
    `weights` ("fp32", "int8" or "int4"; see `decoder.quantized`)."""
    model = DecoderModel(DecoderConfig.from_gguf(f), seed=None)
    load_gguf_weights(model, f)
    quantize_linears(model, weights)
    return model.requires_grad_(False).eval()


def gguf_tokenizer(f: GGUFFile, pre: str, unk_id: int | None) -> BPETokenizer:
    """The GGUF's byte-level BPE vocabulary with the given pre-tokenizer and unknown id (None:
    bytes without a token are dropped, as transformers' GGUF conversion does)."""
    return BPETokenizer(
        f.metadata("tokenizer.ggml.tokens"),
        f.metadata("tokenizer.ggml.merges"),
        f.metadata("tokenizer.ggml.token_type"),
        pre=pre,
        unk_id=unk_id,
    )


def unknown_token_id(f: GGUFFile) -> int:
    """The id a byte with no token becomes: the GGUF's `tokenizer.ggml.unknown_token_id` (0,
    `<|endoftext|>`, in SmolLM2's file), else 0.

    Neither reference uses it for a byte-level BPE: llama.cpp and transformers' GGUF conversion
    both drop such bytes. Mapping them to the unknown id instead (what `tokenizers`' BPE does when
    it has an `unk_token`) keeps every input byte visible in the ids, so text the model sees
    cannot differ from what was sent by silently losing bytes."""
    unk = f.metadata("tokenizer.ggml.unknown_token_id")
    return 0 if unk is None else int(unk)

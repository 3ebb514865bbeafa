"""Text generation behind the routes: a concurrency limit, a worker pool, streaming, cancellation.

Generation runs on its own threads (never the event loop, never the embedding batcher's), at
most `max_concurrent_generations` at once; more is refused with 429 rather than queued for
minutes; a streaming request takes its slot before the response starts. Each request's tokens
travel from the worker to the handler through an asyncio queue; when the client goes away the
handler sets a flag the worker checks between tokens, so a disconnected client stops costing
compute after at most one more token.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from semsearch.service.access import note
from semsearch.service.errors import Overloaded, PayloadTooLarge, ValidationFailed, input_errors
from semsearch.service.offload import run_sized
from semsearch.service.protocols import TextGenerator
from semsearch.service.settings import Settings

if TYPE_CHECKING:
    from semsearch.decoder import SamplingParams

log = logging.getLogger(__name__)


_TEMPLATE_CHARS = 32  # about what ChatML writes around one message


def _greedy() -> SamplingParams:
    # The decoder's module imports torch: only once a generation is asked for, never when the
    # service starts (ONNX serving with the decoder off runs without torch).
    from semsearch.decoder import SamplingParams

    return SamplingParams()


@dataclass(frozen=True)
class Sampling:
    """What a generation asks for: its length, its stop strings, and how each token is chosen
    (the decoder's `SamplingParams`, validated when built). Built from a request by
    `sampling_schema.SamplingFields.sampling`."""

    max_new_tokens: int = 128
    stop: tuple[str, ...] = ()
    params: SamplingParams = field(default_factory=_greedy)


@dataclass(frozen=True)
class Delta:
    text: str
    finish_reason: str | None = None  # set on the last delta: "stop" | "length"
    usage: dict[str, int] | None = None  # on the last delta


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str
    usage: dict[str, int]


@dataclass(frozen=True)
class GenerationStats:
    """What one generation did, handed to an observer (metrics) when it ends, finished or stopped
    because its client left."""

    # prompt, cached and completion tokens; {} if it stopped before the last token
    usage: dict[str, int]
    first_token_s: float | None  # from its slot being taken (admitted) to its first token
    decode_tokens: int  # tokens after the first (the first comes out of the prompt's prefill)
    decode_s: float  # from the first token to the last


class Slot:
    """One of the `max_concurrent_generations` places, taken before a response starts (so a busy
    server answers 429, not a 200 with a cut-off stream). The generation's worker releases it when
    it ends; a slot never handed to a worker (the client left first) is released by its owner."""

    def __init__(self, semaphore: threading.BoundedSemaphore) -> None:
        self.admitted = time.perf_counter()
        self._semaphore = semaphore
        self._lock = threading.Lock()
        self._released = False
        self.handed_over = False

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._semaphore.release()

    def release_unused(self) -> None:
        if not self.handed_over:
            self.release()


class GenerationEngine:
    def __init__(
        self,
        generator: TextGenerator,
        settings: Settings,
        on_generation: Callable[[GenerationStats], None] | None = None,
    ) -> None:
        self.generator = generator
        self.settings = settings
        self._on_generation = on_generation
        self._slots = threading.BoundedSemaphore(settings.max_concurrent_generations)
        self._pool = ThreadPoolExecutor(
            max_workers=settings.max_concurrent_generations, thread_name_prefix="semsearch-gen"
        )

    @property
    def model_id(self) -> str:
        return "SmolLM2-135M-Instruct"

    @property
    def context_length(self) -> int:
        return int(self.generator.context_length)

    def default_max_new_tokens(self, route_default: int) -> int:
        """A route's default length, within this server's SEMSEARCH_MAX_NEW_TOKENS."""
        return min(route_default, self.settings.max_new_tokens)

    def check_sampling(self, sampling: Sampling) -> None:
        """Length and stop sequences within this server's limits (stops are checked per token)."""
        limits = self.settings
        if sampling.max_new_tokens > limits.max_new_tokens:
            raise ValidationFailed(
                f"max_new_tokens={sampling.max_new_tokens} is more than this server's maximum of "
                f"{limits.max_new_tokens} (SEMSEARCH_MAX_NEW_TOKENS)",
                param="max_new_tokens",
            )
        if len(sampling.stop) > limits.max_stop_sequences:
            raise ValidationFailed(
                f"{len(sampling.stop)} stop sequences; at most {limits.max_stop_sequences} "
                "(SEMSEARCH_MAX_STOP_SEQUENCES)",
                param="stop",
            )
        for s in sampling.stop:
            if len(s) > limits.max_stop_chars:
                raise ValidationFailed(
                    f"a stop sequence has {len(s)} characters; at most {limits.max_stop_chars} "
                    "(SEMSEARCH_MAX_STOP_CHARS)",
                    param="stop",
                )

    async def prepare(
        self,
        prompt: str | None,
        messages: Sequence[dict[str, str]] | None,
        sampling: Sampling,
    ) -> list[int]:
        """Pre, before any response starts: limits checked, the prompt tokenized (off the loop
        when long: byte-level BPE costs a few microseconds per character)."""
        self.check_sampling(sampling)
        if (prompt is None) == (messages is None):
            raise ValidationFailed("give exactly one of `prompt` and `messages`")
        if messages is not None and len(messages) > self.settings.max_chat_messages:
            raise PayloadTooLarge(
                f"{len(messages)} messages, more than the limit of "
                f"{self.settings.max_chat_messages} (SEMSEARCH_MAX_CHAT_MESSAGES)"
            )
        texts = [prompt] if prompt is not None else [m["content"] for m in messages or ()]
        # Each message adds its template markers: count them, so many empty messages are not
        # mistaken for a small prompt and tokenized on the loop.
        chars = sum(map(len, texts)) + _TEMPLATE_CHARS * len(messages or ())
        if chars > self.settings.max_prompt_chars:
            raise PayloadTooLarge(
                f"the prompt has {chars} characters, more than the limit of "
                f"{self.settings.max_prompt_chars} (SEMSEARCH_MAX_PROMPT_CHARS)"
            )
        return await run_sized(chars, self.prompt_ids, prompt, messages)

    def chat_ids(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """Chat messages to ids with the model's template, content as plain text (no checks)."""
        with input_errors():
            return self.generator.chat_ids(list(messages), add_generation_prompt=True)

    def prompt_ids(
        self, prompt: str | None, messages: Sequence[dict[str, str]] | None
    ) -> list[int]:
        """A raw prompt, or chat messages rendered with the model's template, to token ids.

        Chat messages (and the documents `/rag` puts in them) are encoded as plain text: only the
        template writes control tokens, so `<|im_start|>system` typed by a user stays text. A raw
        prompt is the caller's whole input to the model, so its special-token text is parsed, as
        llama.cpp's and TGI's completion endpoints do."""
        if (prompt is None) == (messages is None):
            raise ValidationFailed("give exactly one of `prompt` and `messages`")
        if messages is not None:
            if not messages:
                raise ValidationFailed("`messages` must contain at least one message")
            ids = self.chat_ids(messages)
        else:
            assert prompt is not None
            with input_errors():
                ids = self.generator.tokenizer.encode(prompt)
        if not ids:
            raise ValidationFailed("the prompt is empty")
        room = self.generator.context_length - len(ids)
        if room <= 0:
            raise ValidationFailed(
                f"the prompt has {len(ids)} tokens; the model's context is "
                f"{self.generator.context_length}"
            )
        return ids

    def reserve(self) -> Slot:
        """A generation slot now, or 429 (with Retry-After) when all are taken."""
        if not self._slots.acquire(blocking=False):
            raise Overloaded(
                f"{self.settings.max_concurrent_generations} generations are already running "
                "(SEMSEARCH_MAX_CONCURRENT_GENERATIONS); retry later"
            )
        return Slot(self._slots)

    async def stream(
        self, prompt_ids: list[int], sampling: Sampling, slot: Slot | None = None
    ) -> AsyncIterator[Delta]:
        """Deltas as they are generated, in `slot` (reserved here when None). Leaving the
        iterator early stops the generation."""
        slot = slot or self.reserve()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Delta | BaseException | None] = asyncio.Queue()  # None: the end
        cancelled = threading.Event()

        def work() -> None:
            params = sampling.params
            first = last = 0.0  # when the first and the latest token came (0: none yet)
            tokens = 0
            usage: dict[str, int] = {}
            try:
                events = self.generator.stream(
                    prompt_ids,
                    max_new_tokens=sampling.max_new_tokens,
                    temperature=params.temperature,
                    top_p=params.top_p,
                    top_k=params.top_k,
                    repetition_penalty=params.repetition_penalty,
                    stop=list(sampling.stop) or None,
                    seed=params.seed,
                )
                for event in events:
                    if event.token_ids:
                        last = time.perf_counter()
                        first = first or last
                        tokens += len(event.token_ids)
                    usage = event.usage or usage
                    delta = Delta(event.text, event.finish_reason, event.usage)
                    loop.call_soon_threadsafe(queue.put_nowait, delta)
                    if cancelled.is_set():
                        events.close()  # frees the KV cache now
                        log.info("generation stopped: the client went away")
                        break
                if self._on_generation is not None:  # before the end is queued: seen by then
                    self._on_generation(
                        GenerationStats(
                            usage=usage,
                            first_token_s=first - slot.admitted if tokens else None,
                            decode_tokens=max(tokens - 1, 0),
                            decode_s=last - first,
                        )
                    )
            except BaseException as exc:  # handed to the waiting handler, which maps it
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                slot.release()
                loop.call_soon_threadsafe(queue.put_nowait, None)

        try:
            self._pool.submit(work)
            slot.handed_over = True
        except BaseException:
            slot.release()
            raise
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                if item.usage is not None:  # the request's access line
                    note(
                        prompt_tokens=item.usage.get("prompt_tokens", 0),
                        cached_tokens=item.usage.get("cached_tokens", 0),
                        completion_tokens=item.usage.get("completion_tokens", 0),
                    )
                yield item
        finally:
            cancelled.set()

    async def complete(self, prompt_ids: list[int], sampling: Sampling) -> Completion:
        parts: list[str] = []
        finish, usage = "length", {}
        async for delta in self.stream(prompt_ids, sampling):
            parts.append(delta.text)
            if delta.finish_reason is not None:
                finish, usage = delta.finish_reason, delta.usage or {}
        return Completion("".join(parts), finish, usage)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

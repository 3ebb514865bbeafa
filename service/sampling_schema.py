"""The sampling fields of every generation request, declared once, and their one conversion.

`/generate` and `/rag` name the answer's length as llama.cpp and TGI do (`max_new_tokens`);
`/v1/completions` and `/v1/chat/completions` as OpenAI does (`max_tokens`, `max_completion_tokens`)
with OpenAI's temperature (default 1, at most 2). Every other field is the same on all four, and
`SamplingFields.sampling` alone turns them into the decoder's `SamplingParams`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from semsearch.service.errors import ValidationFailed
from semsearch.service.generation import Sampling
from semsearch.service.settings import MAX_STOP_ITEMS, MAX_TOKENS_CEILING

SEED_MAX = 2**64 - 1  # the decoder seeds a 64-bit torch generator (its SEED_LIMIT - 1)

# Refused past a ceiling before any item is validated (SEMSEARCH_MAX_STOP_SEQUENCES, a 422 that
# names the setting, is checked after parsing).
StopList = Annotated[list[str], Field(max_length=MAX_STOP_ITEMS)]
MaxTokens = Annotated[int | None, Field(ge=0, le=MAX_TOKENS_CEILING)]


class SamplingFields(BaseModel):
    """The fields every generation request shares (llama.cpp's and OpenAI's names agree here)."""

    temperature: float = Field(0.0, ge=0.0, le=100.0, description="0 (or below 1e-5) = greedy")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0, description="0 = off")
    repetition_penalty: float = Field(1.0, gt=0.0, le=10.0, description="1 = off")
    stop: str | StopList | None = None
    seed: int | None = Field(None, ge=0, le=SEED_MAX, description="null = a fresh seed")
    stream: bool = False

    def requested_max_new_tokens(self) -> int | None:
        """The answer's length the request asked for; None takes the route's default."""
        raise NotImplementedError  # each dialect names it: NativeSampling, OpenAISampling

    def sampling(self, default_max_new_tokens: int) -> Sampling:
        """The request's sampling, with `default_max_new_tokens` when it names no length."""
        from semsearch.decoder import SamplingParams  # torch: see generation._greedy

        requested = self.requested_max_new_tokens()
        try:
            params = SamplingParams(
                temperature=self.temperature,
                top_p=self.top_p,
                top_k=self.top_k,
                repetition_penalty=self.repetition_penalty,
                seed=self.seed,
            )
        except ValueError as exc:  # the decoder's own checks, past what the fields bound
            raise ValidationFailed(str(exc)) from exc
        return Sampling(
            max_new_tokens=default_max_new_tokens if requested is None else requested,
            stop=stop_strings(self.stop),
            params=params,
        )


def stop_strings(stop: str | list[str] | None) -> tuple[str, ...]:
    """The `stop` field (a string, a list or null) as a tuple of non-empty strings."""
    stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
    if any(s == "" for s in stops):
        raise ValidationFailed("stop strings must not be empty", param="stop")
    return stops


class NativeSampling(SamplingFields):
    """`/generate` and `/rag` (llama.cpp's and TGI's names)."""

    max_new_tokens: MaxTokens = Field(
        None, description="default 128, at most SEMSEARCH_MAX_NEW_TOKENS"
    )

    def requested_max_new_tokens(self) -> int | None:
        return self.max_new_tokens


class StreamOptions(BaseModel):
    include_usage: bool = False  # a last chunk with the usage and no choices


class OpenAISampling(SamplingFields):
    """`/v1/completions` and `/v1/chat/completions`: OpenAI's names and defaults. `top_k` and
    `repetition_penalty` are not OpenAI's, but llama.cpp's server accepts them on /v1 too. Other
    fields are kept (`model_extra`) for `openai_unsupported` to refuse what cannot be honoured."""

    model_config = ConfigDict(extra="allow")

    model: str | None = Field(None, description="any name: the served model answers")
    max_tokens: MaxTokens = Field(
        None, description="default 16 (completions), 512 (chat); at most SEMSEARCH_MAX_NEW_TOKENS"
    )
    max_completion_tokens: MaxTokens = Field(
        None, description="OpenAI's newer name for max_tokens; wins when both are set"
    )
    temperature: float = Field(1.0, ge=0.0, le=2.0, description="0 (or below 1e-5) = greedy")
    stream_options: StreamOptions | None = None

    def requested_max_new_tokens(self) -> int | None:
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens
        return self.max_tokens

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

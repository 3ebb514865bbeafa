"""The prefix cache changes nothing but the work: on SmolLM2, a prompt whose beginning came from
the cache gets the logits and the greedy tokens it gets from a cold cache, in fp32 and in the
served int4 weights."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from semsearch.decoder import load_generator
from semsearch.decoder.prefix_cache import PrefixCache, split_points
from semsearch.service.rag import SYSTEM_PROMPT

SOURCES = (
    "Sources:\n[1] Paris is the capital and largest city of France. It lies on the Seine, and "
    "about two million people live in the city proper.\n\n[2] Berlin is the capital of Germany."
)
# A first turn long enough (32 tokens and more) for its generation prompt to be a split point
LONG_QUESTION = (
    "What is the capital of France, which river runs through it, and what are two famous "
    "buildings that stand on its banks? Please answer in a few short sentences."
)
ASSISTANT = "The capital of France is Paris. The Seine runs through it."

# Pairs of prompts that begin alike: the first fills the cache, the second reuses its beginning.
CONVERSATIONS = {
    "rag, another question on the same sources": (
        [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": SOURCES},
            {"role": "user", "content": "What is the capital of France, and what river is it on?"},
        ],
        [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": SOURCES},
            {"role": "user", "content": "How many people live in Paris, according to the sources?"},
        ],
    ),
    "chat, the next turn": (
        [
            {"role": "system", "content": "You are a concise geography tutor."},
            {"role": "user", "content": LONG_QUESTION},
        ],
        [
            {"role": "system", "content": "You are a concise geography tutor."},
            {"role": "user", "content": LONG_QUESTION},
            {"role": "assistant", "content": ASSISTANT},
            {"role": "user", "content": "And how many people live there, roughly speaking?"},
        ],
    ),
}


@pytest.fixture(scope="module", params=["fp32", "int4"])
def generator(request, real_generator) -> Any:
    if request.param == "fp32":
        return real_generator
    return load_generator(weights="int4")


def cache(generator: Any, ids: list[int]) -> Any:
    return generator.model.new_cache(len(ids))


def _logits_and_tokens(
    generator: Any, ids: list[int], after: list[int] | None
) -> tuple[torch.Tensor, list[int], int]:
    """The logits after prompt `ids`, 12 greedy tokens from it and how many of its tokens the cache
    supplied; each with a new prefix cache that first saw the prompt `after` (if any)."""

    def fresh_cache() -> None:
        generator.prefix_cache = PrefixCache(64 << 20)
        if after is not None:
            list(generator.stream(after, max_new_tokens=1))

    fresh_cache()
    with torch.inference_mode():
        logits, _ = generator._prefill(ids, torch.tensor(ids), cache(generator, ids))
    fresh_cache()
    events = list(generator.stream(ids, max_new_tokens=12))
    tokens = [t for event in events for t in event.token_ids]
    return logits[0, -1], tokens, events[-1].usage["cached_tokens"]


@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_a_cached_beginning_gives_the_cold_logits_and_tokens(generator, name):
    first, second = (generator.chat_ids(m) for m in CONVERSATIONS[name])
    saved = generator.prefix_cache
    try:
        cold_logits, cold_tokens, cold_cached = _logits_and_tokens(generator, second, None)
        warm_logits, warm_tokens, warm_cached = _logits_and_tokens(generator, second, first)
    finally:
        generator.prefix_cache = saved
    assert cold_cached == 0
    # The second prompt reused the messages it shares with the first (at least the system one).
    assert warm_cached >= 20
    assert (warm_logits - cold_logits).abs().max().item() <= 1e-5
    assert warm_tokens == cold_tokens


def test_split_prefill_stays_within_float_rounding_of_one_pass(real_generator):
    """fp32: the split prefill (cache on) against one unsplit pass (cache off) differs only by
    the rounding of differently shaped matmuls."""
    ids = real_generator.chat_ids(CONVERSATIONS["chat, the next turn"][1])
    saved = real_generator.prefix_cache
    try:
        real_generator.prefix_cache = None
        with torch.inference_mode():
            whole, _ = real_generator._prefill(ids, torch.tensor(ids), cache(real_generator, ids))
            real_generator.prefix_cache = PrefixCache(64 << 20)
            split, _ = real_generator._prefill(ids, torch.tensor(ids), cache(real_generator, ids))
    finally:
        real_generator.prefix_cache = saved
    assert len(split_points(ids, real_generator._message_start)) >= 2
    assert (split - whole).abs().max().item() <= 1e-5 * whole.abs().max().item()

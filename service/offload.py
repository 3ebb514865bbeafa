"""Running CPU work off the event loop when it is big enough to matter.

A thread hop costs tens of microseconds, so small inputs are handled inline; anything that could
hold the loop for about a millisecond or more (long texts to tokenize, prompts to BPE-encode) runs
on the default executor, and `/health` keeps answering meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

# Tokenizing this many characters takes well under a millisecond in either tokenizer.
INLINE_CHARS = 1_000


async def run_sized(chars: int, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn(*args, **kwargs)`: inline when its input is `chars` <= INLINE_CHARS, else on a thread."""
    if chars <= INLINE_CHARS:
        return fn(*args, **kwargs)
    return await asyncio.to_thread(fn, *args, **kwargs)

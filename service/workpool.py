"""A bounded pool of threads for one kind of blocking work, refusing with 429 when it is full.

Searches run here rather than on asyncio's shared executor (six threads on two cores): a burst of
expensive filtered searches then waits for its own threads, or is refused, instead of taking every
thread that document reads, writes and tokenization need.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from semsearch.service.errors import Overloaded

P = ParamSpec("P")
T = TypeVar("T")


class WorkPool:
    def __init__(self, name: str, threads: int, max_pending: int, setting: str) -> None:
        self.name = name
        self.max_pending = max_pending
        self._setting = setting
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)
        self._pending = 0  # running or queued
        self._lock = threading.Lock()

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        with self._lock:
            if self._pending >= self.max_pending:
                raise Overloaded(
                    f"{self.max_pending} {self.name} requests are already waiting "
                    f"({self._setting}); retry later"
                )
            self._pending += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))
        finally:
            with self._lock:
                self._pending -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
